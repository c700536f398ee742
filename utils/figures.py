"""The pictures evaluation and localization draw: a recall curve, retrievals beside their query, and their parts.

Everything draws on matplotlib's Agg canvas (`Figure` + `FigureCanvasAgg`), so no display is needed, and
every file is written beside its final name first and then renamed over it, so a reader never sees half a
file. What test.py writes from an evaluation is `utils.report`'s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DIRECTION_LABELS = {"p2s": "ground \u2192 aerial (p2s)", "s2p": "aerial \u2192 ground (s2p)"}
MIN_CURVE_K = 10
REPORT_QUERIES = 4
REPORT_TOP_K = 5
MATCH_COLOUR = "#1a9641"
OTHER_COLOUR = "0.6"


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas with constrained layout, so titles and tick labels never overlap."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save as PNG beside `path` (its folder created if needed), then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=dpi, format="png")
    os.replace(tmp, path)
    return path


def to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 CHW tensor (the datasets' convention) or HWC array -> HWC array for imshow."""
    if isinstance(image, torch.Tensor):
        return image.permute(1, 2, 0).cpu().numpy()
    return np.asarray(image)


def label_panorama(axes: Axes, width: int, fontsize: float = 7) -> None:
    """Compass ticks under a north-aligned panorama: north at the centre column, azimuth clockwise to the right.

    This is the convention of the benchmarks' panoramas and of dataset/synthetic: west at W/4, east at
    3W/4, south at both edges.
    """
    axes.set_xticks([0, width / 4, width / 2, 3 * width / 4, width], ["S", "W", "N", "E", "S"], fontsize=fontsize)
    axes.tick_params(axis="x", length=2, pad=1)
    axes.set_yticks([])


def frame(axes: Axes, is_match: bool) -> None:
    """A thick green frame around the true match, a thin grey one around the other images."""
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(MATCH_COLOUR if is_match else OTHER_COLOUR)
        spine.set_linewidth(4.0 if is_match else 0.8)


# --------------------------------------------------------------------------------------------- recall curve


def curve_max_k(num: int) -> int:
    """The curve runs to 1% of the gallery, but at least to k = 10, and never past the gallery."""
    return min(num, max(MIN_CURVE_K, math.ceil(0.01 * num)))


def recall_curve_figure(ks: Sequence[int], curves: dict[str, Sequence[float]], num: int, title: str) -> Figure:
    """Recall against k for both directions, R@1 and R@10 in the legend, chance and k = 1% of the gallery marked."""
    figure = new_figure(6.4, 4.2)
    axes = figure.subplots()
    many = len(ks) > 30
    for direction, values in curves.items():
        label = DIRECTION_LABELS[direction]
        summary = ", ".join(f"R@{k} {values[k - 1]:.1f}" for k in (1, 10) if k <= len(values))
        axes.plot(ks, values, marker=None if many else "o", markersize=3, linewidth=1.6,
                  label=f"{label}: {summary}")
    axes.plot(ks, [100.0 * k / num for k in ks], color="0.5", linestyle=":", linewidth=1, label="chance (k / N)")
    one_percent = 0.01 * num
    if one_percent >= 1:
        axes.axvline(one_percent, color="0.4", linestyle="--", linewidth=1,
                     label=f"k = 1% of the gallery ({one_percent:g})")
    if ks[-1] > 100:
        axes.set_xscale("log")
        axes.set_xlim(ks[0] * 0.9, ks[-1] * 1.1)
    else:
        axes.set_xlim(ks[0] - 0.5, ks[-1] + 0.5)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    finish_percent_axes(axes, "k (references retrieved)", "recall@k (%)", title)
    return figure


def finish_percent_axes(axes: Axes, xlabel: str, ylabel: str, title: str, legend: str = "best") -> None:
    """Labels, a 0-100 % scale, a light grid, the legend and the title of a curve of percentages."""
    axes.set_ylim(0, 101)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(loc=legend, fontsize=8)
    axes.set_title(title, fontsize=10)


# --------------------------------------------------------------------------------------------- retrievals


@dataclass(frozen=True)
class Retrieval:
    """One ground query and the aerial images to show beside it, best first; compass ticks for a whole panorama."""

    query: np.ndarray  # panorama, uint8 H x W x 3
    query_title: str
    images: list[np.ndarray]  # aerial images, uint8 H x W x 3
    titles: list[str]
    is_match: list[bool]
    compass: bool = True

    @classmethod
    def of_sample(cls, sample: dict[str, Any], query_title: str, images: list[np.ndarray], titles: list[str],
                  is_match: list[bool]) -> Retrieval:
        """A query from a dataset sample: a limited field of view (with "turn_deg") gets its own title, no compass."""
        limited = "turn_deg" in sample
        return cls(query=to_hwc(sample["grd"]), query_title=view_title(query_title, sample["turn_deg"]) if limited
                   else query_title, images=images, titles=titles, is_match=is_match, compass=not limited)


def retrievals_figure(retrievals: Sequence[Retrieval], title: str = "") -> Figure:
    """One row per query: the panorama (with compass labels), then its aerial images; true matches framed green."""
    columns = max(len(r.images) for r in retrievals)
    grd_aspect = retrievals[0].query.shape[1] / retrievals[0].query.shape[0]
    title_lines = max(t.count("\n") + 1 for r in retrievals for t in r.titles)
    unit = 1.55
    row_height = unit + 0.25 + 0.13 * title_lines
    figure = new_figure(unit * (grd_aspect + columns) + 0.4, row_height * len(retrievals) + (0.35 if title else 0))
    grid = figure.subplots(len(retrievals), 1 + columns, squeeze=False,
                           gridspec_kw={"width_ratios": [grd_aspect] + [1] * columns})
    for row, retrieval in zip(grid, retrievals, strict=True):
        row[0].imshow(retrieval.query)
        row[0].set_title(retrieval.query_title, fontsize=8)
        if retrieval.compass:
            label_panorama(row[0], retrieval.query.shape[1])
        else:
            row[0].set_xticks([])
            row[0].set_yticks([])
        for column, axes in enumerate(row[1:]):
            if column >= len(retrieval.images):
                axes.set_axis_off()
                continue
            axes.imshow(retrieval.images[column])
            axes.set_title(retrieval.titles[column], fontsize=6.5)
            frame(axes, retrieval.is_match[column])
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def ranked_matches(
    sat: torch.Tensor, grd: torch.Tensor, queries: Sequence[int], top_k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ground queries: the top-k aerial indices (Q, k), all their similarities (Q, N), by cosine similarity."""
    similarities = (grd[list(queries)].float() @ sat.float().T).numpy()
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :top_k]
    return order, np.take_along_axis(similarities, order, axis=1), similarities


def view_title(title: str, turn_deg: float) -> str:
    """A query's title over a limited field of view: narrower than a panorama, so on lines of its own.

    The panoramas have south (bearing 180) at their left edge, and a slice turned by `turn_deg` starts that many
    degrees to the left of it (`crop_field_of_view`).
    """
    return title.replace(": ", ":\n", 1) + f"\nview from bearing {round(180 - turn_deg) % 360} deg"


