"""The map as an orthophoto: one GeoTIFF of the whole aerial view, north up, in UTM zone 10 N, with a real
geotransform, and the true position of every panorama, so that localizing against a city can be tried and its
error in metres measured without any download.

The world's frame is UTM-like (`world.ORIGIN_EASTING`, `world.ORIGIN_NORTHING` at the map's north-west
corner); the GeoTIFF takes it as EPSG:32610 (WGS 84 / UTM zone 10N), which puts the map near 37.9 N, 123 W.
The imagery is the aerial crops' own rendering (albedo times shading, the same blur) under one lighting,
at the aerial images' ground resolution (never finer than the map's cells).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from dataset.synthetic.render import Lighting
from dataset.synthetic.world import CELL_M, ORIGIN_EASTING, ORIGIN_NORTHING, World

UTM_CRS = "EPSG:32610"
STRIP_ROWS = 512  # map rows shaded at a time, to keep a large map's float copy small


def write_orthophoto(world: World, path: Path, metres_per_pixel: float, rng: np.random.Generator) -> dict:
    """Write the whole map as a tiled, deflate-compressed RGB GeoTIFF at `metres_per_pixel`; returns its size,
    CRS and geotransform. Written beside `path` and renamed into place."""
    import rasterio
    from rasterio.transform import from_origin

    metres_per_pixel = max(CELL_M, float(metres_per_pixel))
    rows, cols = world.kind.shape
    height = max(1, int(round(rows * CELL_M / metres_per_pixel)))
    width = max(1, int(round(cols * CELL_M / metres_per_pixel)))
    lit = _shaded(world)
    if (height, width) != lit.shape[:2]:
        lit = cv2.resize(lit, (width, height), interpolation=cv2.INTER_AREA)
    lighting = Lighting.draw(rng, spread=0.06)
    transform = from_origin(ORIGIN_EASTING, ORIGIN_NORTHING, cols * CELL_M / width, rows * CELL_M / height)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8", "crs": UTM_CRS,
               "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "photometric": "RGB"}
    try:
        with rasterio.open(partial, "w", **profile) as out:
            for top in range(0, height, STRIP_ROWS):
                strip = lighting.apply(lit[top: top + STRIP_ROWS].astype(np.float32), rng)
                out.write(np.moveaxis(strip, -1, 0), window=((top, top + len(strip)), (0, width)))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {"path": str(path), "size": [height, width], "crs": UTM_CRS, "transform": list(transform)[:6]}


def _shaded(world: World) -> np.ndarray:
    """The map's aerial colours (albedo times shading, blurred as the crops are) as uint8 (rows, cols, 3)."""
    rows = world.kind.shape[0]
    margin = 4
    out = np.empty(world.albedo.shape, np.uint8)
    for top in range(0, rows, STRIP_ROWS):
        lo, hi = max(0, top - margin), min(rows, top + STRIP_ROWS + margin)
        shade = world.aerial_shade[lo:hi].astype(np.float32)[..., None] / 255.0
        rgb = cv2.GaussianBlur(world.albedo[lo:hi].astype(np.float32) * shade, (0, 0), 0.6)
        out[top: min(rows, top + STRIP_ROWS)] = np.clip(rgb[top - lo: top - lo + STRIP_ROWS], 0, 255).astype(np.uint8)
    return out


def write_panorama_positions(path: Path, names: list[str], utm: np.ndarray, splits: list[str]) -> None:
    """A CSV of each panorama's file name, true latitude and longitude, and split: `localize.py --truth`."""
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True).transform(utm[:, 0], utm[:, 1])
    lines = ["name,latitude,longitude,split\n"]
    rows = zip(names, lat, lon, splits, strict=True)
    lines += [f"{name},{la:.8f},{lo:.8f},{split}\n" for name, la, lo, split in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
