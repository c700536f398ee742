"""What test.py leaves after an evaluation, paired data and galleries alike: recall_curve.png, retrievals.png,
localization_error.png (where positions give the top-1 reference's error) and the run's row of results.csv.

Every picture is drawn from the evaluation's own rankings (`utils.evaluation.Evaluation`), so a query's rank
in retrievals.png and the recall curve are the figures' own, not recomputed.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from utils.evaluation import Evaluation
from utils.figures import (
    REPORT_QUERIES,
    REPORT_TOP_K,
    Retrieval,
    curve_max_k,
    finish_percent_axes,
    new_figure,
    ranked_matches,
    recall_curve_figure,
    retrievals_figure,
    save_figure,
    to_hwc,
)
from utils.geo import THRESHOLDS_M

try:
    import fcntl
except ImportError:  # Windows: appends of one short line are still whole, only the header could be doubled
    fcntl = None

RECALL_NAMES = ("r@1", "r@5", "r@10", "r@1%")
CSV_COLUMNS = (
    "time", "run_folder", "dataset", "split", "num", "checkpoint", "protocol", "match_radius_m",
    *(f"{direction}_{name}" for direction in ("p2s", "s2p") for name in RECALL_NAMES),
    "hit_rate", "median_error_m", "accuracy_10m", "fov", "orientation_noise",
    "precision", "no_fc", "sa_num", "sat_size", "grd_size", "backbone",
)
# Longer ids are cut to their last characters under an aerial image, which is about that wide.
MAX_ID_CHARS = 24

log = logging.getLogger("cvgl")


def write_test_report(run_dir: str | os.PathLike, results_csv: str | os.PathLike, summary: dict[str, Any],
                      evaluation: Evaluation, queries: Any, references: Any) -> dict[str, Path]:
    """recall_curve.png, retrievals.png and (with positions) localization_error.png in `run_dir`, and the run's
    row in `results_csv`; returns what was written by name.

    `summary` is what test.py writes to results.json. `queries[i]["grd"]` and `references[j]["sat"]` give the
    images and `.ids` their names; for pairs both are the same dataset.
    """
    run_dir = Path(run_dir)
    num_references = evaluation.rankings["p2s"].num_references
    size = f"{summary['num']} pairs" if queries is references else \
        f"{summary['num']} queries, {num_references} references"
    name = f"{summary['dataset']} {summary['split']}, {size}, {Path(summary['checkpoint']).name}"
    radius = evaluation.matching.radius_m
    if radius is not None:
        name += f", found within {radius:g} m"
    ks = list(range(1, curve_max_k(num_references) + 1))
    curves = {direction: list(ranking.recall(ks).values()) for direction, ranking in evaluation.rankings.items()}
    written = {"recall_curve": save_figure(recall_curve_figure(ks, curves, num_references, name),
                                           run_dir / "recall_curve.png")}
    retrievals = evaluation_retrievals(evaluation, queries, references)
    top_k = min(REPORT_TOP_K, num_references)
    written["retrievals"] = save_figure(
        retrievals_figure(retrievals, f"{name}: ground queries and their top-{top_k} aerial images "
                                      "(green: a match; d = 2 - 2 cos, lower is closer)"),
        run_dir / "retrievals.png")
    if evaluation.errors_m is not None:
        written["localization_error"] = save_figure(localization_figure(evaluation.errors_m, name),
                                                    run_dir / "localization_error.png")
    table = append_results_row(results_csv, results_row(summary, run_dir))
    if table is not None:
        written["results_csv"] = table
    return written


def evaluation_retrievals(evaluation: Evaluation, queries: Any, references: Any, num_queries: int = REPORT_QUERIES,
                          top_k: int = REPORT_TOP_K) -> list[Retrieval]:
    """Evenly spaced queries with their top-k references; those that show the query's place are framed green.

    A query's rank is the metric's: one plus the references strictly more similar than its most similar match;
    when it is beyond k, that match is added last. Under each reference: its rank and distance, its id, and
    where known its distance from the query (pairs with `utm`) or whether it is the positive or a semi-positive.
    """
    sat, grd = evaluation.descriptors["sat"], evaluation.descriptors["grd"]
    ranking, positives = evaluation.rankings["p2s"], evaluation.positives
    top_k = min(top_k, len(sat))
    picked = np.unique(np.linspace(0, len(grd) - 1, min(num_queries, len(grd))).round().astype(int)).tolist()
    order, top_similarities, similarities = ranked_matches(sat, grd, picked, top_k)
    utm = getattr(references, "utm", None) if queries is references else None
    radius = evaluation.matching.radius_m
    retrievals = []
    for row, query in enumerate(picked):
        matches = positives.of_query(query).cpu().numpy()
        place = set(positives.covering_query(query).cpu().tolist())
        best = int(matches[np.argmax(similarities[row, matches])])
        rank = 1 + int(ranking.closer[query])
        shown, shown_ranks = [int(index) for index in order[row]], list(range(1, top_k + 1))
        if rank > top_k:
            shown.append(best)
            shown_ranks.append(rank)
        titles = []
        for position, (index, shown_rank) in enumerate(zip(shown, shown_ranks, strict=True)):
            lead = "true match: " if position == top_k else ""
            distance = 2 - 2 * similarities[row, index]
            title = f"{lead}rank {shown_rank}  d={distance:.3f}\n{_short(references.ids[index])}"
            if utm is not None:
                title += f"\n{np.hypot(*(utm[index] - utm[query])):.0f} m from the query"
            if positives.covering is not None and index in place:
                title += "\npositive" if index in matches else "\nsemi-positive"
            titles.append(title)
        query_title = f"query {_short(queries.ids[query])}: true match at rank {rank}"
        if radius is not None:
            query_title += f" (within {radius:g} m)"
        if evaluation.errors_m is not None:
            query_title += f", top-1 {evaluation.errors_m[query]:.1f} m away"
        retrievals.append(Retrieval.of_sample(
            queries[query], query_title, images=[to_hwc(references[index]["sat"]) for index in shown],
            titles=titles, is_match=[index in place for index in shown]))
    return retrievals


def _short(identifier: str) -> str:
    return identifier if len(identifier) <= MAX_ID_CHARS else "\u2026" + identifier[-(MAX_ID_CHARS - 1):]


def localization_figure(errors_m: np.ndarray, title: str) -> Figure:
    """The share of queries whose top-1 reference's centre lies within d metres of them, d from 1 to 50 m."""
    figure = new_figure(6.4, 4.2)
    axes = figure.subplots()
    thresholds = np.array(THRESHOLDS_M)
    share = [(errors_m <= t).mean() * 100.0 for t in thresholds]
    median = float(np.median(errors_m))
    axes.plot(thresholds, share, linewidth=1.8, label=f"top-1 tile's centre; median error {median:.1f} m")
    axes.axvline(10, color="0.4", linestyle="--", linewidth=1, label=f"10 m: {share[9]:.1f}%")
    axes.set_xlim(1, thresholds[-1])
    finish_percent_axes(axes, "distance to the panorama's GPS position (m)", "queries within that distance (%)",
                        title, legend="upper left")
    return figure


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
