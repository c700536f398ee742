"""What an evaluation leaves for people to look at: a recall curve, a few retrievals, a row of a comparison table.

Everything draws on matplotlib's Agg canvas (`Figure` + `FigureCanvasAgg`), so no display is needed, and
every file is written beside its final name first and then renamed over it, so a reader never sees half a
file. `write_test_report` is the one call test.py makes after results.json.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
import zlib
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

from utils.recall import recall_at_k, recall_within_distance

try:
    import fcntl
except ImportError:  # Windows: appends of one short line are still whole, only the header could be doubled
    fcntl = None

DIRECTION_LABELS = {"p2s": "ground \u2192 aerial (p2s)", "s2p": "aerial \u2192 ground (s2p)"}
MIN_CURVE_K = 10
REPORT_QUERIES = 4
REPORT_TOP_K = 5
MATCH_COLOUR = "#1a9641"
OTHER_COLOUR = "0.6"
RECALL_NAMES = ("r@1", "r@5", "r@10", "r@1%")
CSV_COLUMNS = (
    "time", "run_folder", "dataset", "split", "num", "checkpoint", "protocol", "match_radius_m",
    *(f"{direction}_{name}" for direction in ("p2s", "s2p") for name in RECALL_NAMES),
    "hit_rate", "median_error_m", "accuracy_10m", "fov", "orientation_noise",
    "precision", "no_fc", "sa_num", "sat_size", "grd_size", "backbone",
)

log = logging.getLogger("cvgl")


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


def recall_curve(
    sat: torch.Tensor, grd: torch.Tensor, utm: torch.Tensor | None = None, radius: float | None = None
) -> tuple[list[int], dict[str, list[float]]]:
    """Recall in percent for every k from 1 to `curve_max_k(N)`, both directions, by the metric of utils.recall.

    With `utm` and `radius`, a reference within `radius` metres of the query counts (CVACT's test split).
    """
    ks = list(range(1, curve_max_k(sat.shape[0]) + 1))
    if radius is not None and utm is not None:
        results = recall_within_distance(sat, grd, utm, ks=ks, radius=radius)
    else:
        results = recall_at_k(sat, grd, ks=ks)
    return ks, {direction: [results[direction][f"r@{k}"] for k in ks] for direction in DIRECTION_LABELS}


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


def evaluation_retrievals(
    descriptors: dict[str, torch.Tensor],
    dataset: Any,
    num_queries: int = REPORT_QUERIES,
    top_k: int = REPORT_TOP_K,
    radius: float | None = None,
) -> list[Retrieval]:
    """Evenly spaced ground queries of an evaluated split with their top-k aerial results.

    `dataset[i]` gives uint8 CHW "sat"/"grd", `dataset.ids` the ids and, for CVACT, `dataset.utm` the
    positions, shown as each result's offset from the query. The query's rank is the metric's: one plus
    the number of references strictly more similar than its true match (with `radius`: than its most
    similar reference within `radius` metres). When that rank is beyond k, the true match is added last.
    """
    sat, grd = descriptors["sat"], descriptors["grd"]
    num = sat.shape[0]
    top_k = min(top_k, num)
    queries = np.unique(np.linspace(0, num - 1, min(num_queries, num)).round().astype(int)).tolist()
    order, top_similarities, similarities = ranked_matches(sat, grd, queries, top_k)
    utm = getattr(dataset, "utm", None)
    retrievals = []
    for row, query in enumerate(queries):
        if radius is not None and utm is not None:
            positives = np.flatnonzero(np.hypot(*(utm - utm[query]).T) <= radius)
        else:
            positives = np.array([query])
        best = positives[np.argmax(similarities[row, positives])]
        rank = 1 + int(np.sum(similarities[row] > similarities[row, best]))
        shown = list(order[row])
        shown_similarities = list(top_similarities[row])
        shown_ranks = list(range(1, top_k + 1))
        if rank > top_k:
            shown.append(best)
            shown_similarities.append(similarities[row, best])
            shown_ranks.append(rank)
        titles = []
        for position, (index, similarity, shown_rank) in enumerate(
            zip(shown, shown_similarities, shown_ranks, strict=True)
        ):
            lead = "true match: " if position == top_k else ""
            title = f"{lead}rank {shown_rank}  d={2 - 2 * similarity:.3f}\n{dataset.ids[index]}"
            if utm is not None:
                title += f"\n{np.hypot(*(utm[index] - utm[query])):.0f} m from the query"
            titles.append(title)
        query_title = (f"query {dataset.ids[query]}: true match at rank {rank}"
                       + (f" (within {radius:g} m)" if radius is not None and utm is not None else ""))
        retrievals.append(Retrieval.of_sample(
            dataset[query], query_title, images=[to_hwc(dataset[int(index)]["sat"]) for index in shown],
            titles=titles, is_match=[bool(np.isin(index, positives)) for index in shown]))
    return retrievals


def view_title(title: str, turn_deg: float) -> str:
    """A query's title over a limited field of view: narrower than a panorama, so on lines of its own.

    The panoramas have south (bearing 180) at their left edge, and a slice turned by `turn_deg` starts that many
    degrees to the left of it (`crop_field_of_view`).
    """
    return title.replace(": ", ":\n", 1) + f"\nview from bearing {round(180 - turn_deg) % 360} deg"


# --------------------------------------------------------------------------------------------- results table


def results_row(summary: dict[str, Any], run_dir: str | os.PathLike) -> dict[str, Any]:
    """One row of the comparison table from a results.json summary."""
    row = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run_folder": os.path.abspath(run_dir),
        **{key: summary.get(key) for key in ("dataset", "split", "num", "checkpoint", "protocol", "match_radius_m")},
        **{f"{direction}_{name}": f"{summary[direction][name]:.4f}" if direction in summary else None
           for direction in ("p2s", "s2p") for name in RECALL_NAMES},
        "hit_rate": _figure(summary.get("hit_rate")),
        "median_error_m": _figure(summary.get("localization", {}).get("median_m")),
        "accuracy_10m": _figure(summary.get("localization", {}).get("accuracy_10m")),
        **{key: summary.get(key) for key in ("fov", "orientation_noise", "precision", "no_fc", "sa_num")},
        "sat_size": "x".join(map(str, summary["sat_size"])),
        "grd_size": "x".join(map(str, summary["grd_size"])),
        "backbone": summary.get("backbone"),
    }
    return {key: "" if value is None else value for key, value in row.items()}


def _figure(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def append_results_row(csv_path: str | os.PathLike, row: dict[str, Any]) -> Path | None:
    """Append one row to the comparison table, with the header when the file is new; returns the file written.

    The row goes out in one write to a file opened for appending, under an exclusive lock where the
    system has one, so concurrent runs add whole lines and the header is written once. A table written
    before columns were added gets the new header, its earlier rows those columns empty (rewritten beside
    it and renamed over it). A table with columns this version does not write is left alone: the row goes
    to a file beside it named after the new header. Either is said in one line. None: not written at all.
    """
    path = Path(csv_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow([row[column] for column in CSV_COLUMNS])
    header = ",".join(CSV_COLUMNS) + "\n"
    beside = path.with_name(f"{path.stem}_{zlib.crc32(header.encode()):08x}{path.suffix}")
    while True:
        with open(path, "a+", newline="") as table:
            if fcntl is not None:
                fcntl.flock(table.fileno(), fcntl.LOCK_EX)
            if not _is_still(table, path):  # another run rewrote it while this one waited for the lock
                continue
            table.seek(0)
            first_line = table.readline()
            if not first_line or first_line == header:
                table.seek(0, os.SEEK_END)
                table.write(line.getvalue() if first_line else header + line.getvalue())
                table.flush()
                return path
            columns = next(csv.reader([first_line]))
            if set(columns) < set(CSV_COLUMNS):
                earlier = list(csv.DictReader(table, fieldnames=columns))
                _rewrite(path, header, earlier, line.getvalue())
                log.warning("%s: its header gained the columns %s; its %d earlier rows leave them empty", path,
                            ", ".join(c for c in CSV_COLUMNS if c not in columns), len(earlier))
                return path
        if path == beside:
            log.warning("%s has other columns than %s; the row was not added", path, ", ".join(CSV_COLUMNS))
            return None
        log.warning("%s has columns this version does not write; the row went to %s", path, beside)
        path = beside


def _is_still(table: io.TextIOBase, path: Path) -> bool:
    """Whether the open file is still the one at `path` (not renamed over since it was opened)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(table.fileno())
    return (opened.st_dev, opened.st_ino) == (status.st_dev, status.st_ino)


def _rewrite(path: Path, header: str, rows: list[dict[str, str]], new_line: str) -> None:
    """The table with the new header, its rows under it, then the new line: written beside, renamed over it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(partial, "w", newline="") as table:
        table.write(header)
        csv.DictWriter(table, CSV_COLUMNS, restval="", lineterminator="\n").writerows(rows)
        table.write(new_line)
    os.replace(partial, path)


def write_test_report(
    run_dir: str | os.PathLike,
    results_csv: str | os.PathLike,
    summary: dict[str, Any],
    descriptors: dict[str, torch.Tensor],
    dataset: Any,
) -> dict[str, Path]:
    """recall_curve.png and retrievals.png in `run_dir`, and the run's row in `results_csv`.

    `summary` is what test.py writes to results.json; `descriptors` are the evaluated split's {"sat", "grd"}
    in dataset order.
    """
    run_dir = Path(run_dir)
    radius = summary.get("match_radius_m")
    utm = getattr(dataset, "utm", None)
    utm = torch.as_tensor(utm) if radius is not None and utm is not None else None
    name = f"{summary['dataset']} {summary['split']}, {summary['num']} pairs, {Path(summary['checkpoint']).name}"
    if utm is not None:
        name += f", found within {radius:g} m"

    ks, curves = recall_curve(descriptors["sat"], descriptors["grd"], utm, radius)
    curve = save_figure(recall_curve_figure(ks, curves, summary["num"], name), run_dir / "recall_curve.png")
    retrievals = evaluation_retrievals(descriptors, dataset, radius=radius)
    top_k = min(REPORT_TOP_K, summary["num"])
    top = save_figure(retrievals_figure(retrievals, f"{name}: ground queries and their top-{top_k} aerial images "
                                                    "(green: true match; d = 2 - 2 cos, lower is closer)"),
                      run_dir / "retrievals.png")
    written = {"recall_curve": curve, "retrievals": top}
    table = append_results_row(results_csv, results_row(summary, run_dir))
    if table is not None:
        written["results_csv"] = table
    return written
