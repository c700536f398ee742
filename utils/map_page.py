"""The localization answers on a map: one HTML page, Leaflet through folium, that opens without a network.

The page is built with folium's offline build (`offlinefolium`, the package folium-offline), which inlines
Leaflet's scripts and styles, so it renders in a browser with no internet, as on a field laptop. There is no
base map (its tiles would need the network); the orthophoto itself, downsampled, lies under the layers.
Each panorama is one layer, switched in the corner: its top-k tiles' footprints (the best in red, the others
orange, thinner with rank), the estimated position (a blue marker) and, where known, the true position (a
green marker) with the error in metres in its popup.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BEST_COLOUR, OTHER_COLOUR, ESTIMATE_COLOUR, TRUTH_COLOUR = "#d7191c", "#fdae61", "#2b83ba", "#1a9641"


class MapUnavailable(RuntimeError):
    """The map needs the folium-offline package."""


@dataclass
class MapLayer:
    """One panorama's answer: its name, the estimate (lat, lon), the top-k footprints (k, 4, 2) in (lat, lon)
    with their ids and similarities, and the true position when known."""

    name: str
    estimate: np.ndarray
    confidence: float
    footprints: np.ndarray
    ids: Sequence[str]
    similarities: Sequence[float]
    truth: np.ndarray | None = None
    error_m: float | None = None


@dataclass
class Backdrop:
    """An RGB picture (H, W, 3) uint8 and its (south, west, north, east) bounds in degrees."""

    image: np.ndarray
    bounds: tuple[float, float, float, float]


def _folium():
    try:
        import offlinefolium
    except ImportError:
        raise MapUnavailable("the map needs folium's offline build: pip install folium-offline") from None
    return offlinefolium


def map_page(layers: Sequence[MapLayer], backdrop: Backdrop | None, title: str) -> str:
    """The page's HTML."""
    folium = _folium()
    points = [layer.footprints.reshape(-1, 2) for layer in layers] + [np.array([layer.estimate]) for layer in layers]
    points += [np.array([layer.truth]) for layer in layers if layer.truth is not None]
    every = np.concatenate(points)
    page = folium.Map(location=every.mean(0).tolist(), tiles=None, control_scale=True, zoom_start=16)
    if backdrop is not None:
        south, west, north, east = backdrop.bounds
        folium.raster_layers.ImageOverlay(_png_data_url(backdrop.image), bounds=[[south, west], [north, east]],
                                          name="orthophoto", opacity=1.0).add_to(page)
    for number, layer in enumerate(layers):
        group = folium.FeatureGroup(name=html.escape(layer.name), show=number == 0)
        for rank in range(len(layer.footprints) - 1, -1, -1):  # the best drawn last, on top
            corners = layer.footprints[rank]
            folium.Polygon(corners.tolist(), color=BEST_COLOUR if rank == 0 else OTHER_COLOUR,
                           weight=3 if rank == 0 else 1.5, fill=rank == 0, fill_opacity=0.1,
                           tooltip=f"rank {rank + 1}: {html.escape(str(layer.ids[rank]))} "
                                   f"s={layer.similarities[rank]:.3f}").add_to(group)
        folium.CircleMarker(layer.estimate.tolist(), radius=7, color=ESTIMATE_COLOUR, fill=True, fill_opacity=0.9,
                            tooltip=f"estimate {layer.estimate[0]:.6f}, {layer.estimate[1]:.6f} "
                                    f"(confidence {layer.confidence:.3f})").add_to(group)
        if layer.truth is not None:
            folium.CircleMarker(layer.truth.tolist(), radius=7, color=TRUTH_COLOUR, fill=True, fill_opacity=0.9,
                                tooltip=f"true position; error {layer.error_m:.1f} m").add_to(group)
        group.add_to(page)
    folium.LayerControl(collapsed=False).add_to(page)
    first = np.concatenate([layers[0].footprints.reshape(-1, 2), layers[0].estimate[None]]
                           + ([layers[0].truth[None]] if layers[0].truth is not None else []))
    page.fit_bounds([first.min(0).tolist(), first.max(0).tolist()], padding=(30, 30))  # the layer shown first
    page.get_root().html.add_child(folium.Element(f"<title>{html.escape(title)}</title>"))
    return page.get_root().render()


def write_map(path: str | os.PathLike, layers: Sequence[MapLayer], backdrop: Backdrop | None, title: str) -> Path:
    """Write the page beside `path`, then rename it over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(map_page(layers, backdrop, title), encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _png_data_url(image: np.ndarray) -> str:
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError("the backdrop could not be encoded as PNG")
    return "data:image/png;base64," + base64.b64encode(io.BytesIO(encoded.tobytes()).getvalue()).decode()
