"""The test report of a gallery apart from its queries (VIGOR): recall curve, retrievals, localization error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from utils.figures import (
    REPORT_QUERIES,
    REPORT_TOP_K,
    Retrieval,
    append_results_row,
    curve_max_k,
    finish_percent_axes,
    new_figure,
    ranked_matches,
    recall_curve_figure,
    results_row,
    retrievals_figure,
    save_figure,
    to_hwc,
)
from utils.geo import THRESHOLDS_M
from utils.recall import QueryRanking


def localization_figure(errors_m: np.ndarray, title: str) -> Figure:
    """The share of queries whose top-1 tile's centre lies within d metres of them, d from 1 to 50 m."""
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


def query_retrievals(descriptors: dict[str, torch.Tensor], queries: Any, gallery: Any,
                     ranking: QueryRanking, errors_m: np.ndarray | None) -> list[Retrieval]:
    """Evenly spaced queries with their top-k tiles; the positive and semi-positives are framed green.

    `queries[i]["grd"]`, `queries.ids`, `queries.labels` (positive first) and `gallery[j]["sat"]`,
    `gallery.ids` give what is shown. The positive is added last when it ranks beyond k.
    """
    sat, grd = descriptors["sat"], descriptors["grd"]
    top_k = min(REPORT_TOP_K, len(sat))
    picked = np.unique(np.linspace(0, len(grd) - 1, min(REPORT_QUERIES, len(grd))).round().astype(int)).tolist()
    order, top_similarities, similarities = ranked_matches(sat, grd, picked, top_k)
    retrievals = []
    for row, query in enumerate(picked):
        labels = queries.labels[query]
        rank = 1 + int(ranking.closer[query])
        shown, shown_similarities = list(order[row]), list(top_similarities[row])
        titles = [f"rank {k + 1}  d={2 - 2 * value:.3f}" for k, value in enumerate(shown_similarities)]
        if rank > top_k:
            shown.append(int(labels[0]))
            titles.append(f"positive: rank {rank}  d={2 - 2 * similarities[row, labels[0]]:.3f}")
        titles = [title + ("\npositive" if index == labels[0] else "\nsemi-positive" if index in labels else "")
                  for title, index in zip(titles, shown, strict=True)]
        query_title = f"query {queries.ids[query][:22]}: positive at rank {rank}"
        if errors_m is not None:
            query_title += f", top-1 {errors_m[query]:.1f} m away"
        retrievals.append(Retrieval.of_sample(
            queries[query], query_title, images=[to_hwc(gallery[int(index)]["sat"]) for index in shown],
            titles=titles, is_match=[bool(index in labels) for index in shown]))
    return retrievals


def write_query_report(run_dir: str | os.PathLike, results_csv: str | os.PathLike, summary: dict[str, Any],
                       descriptors: dict[str, torch.Tensor], ranking: QueryRanking, errors_m: np.ndarray | None,
                       queries: Any, gallery: Any) -> dict[str, Path]:
    """recall_curve.png, retrievals.png and (with positions) localization_error.png, and the row in results_csv."""
    run_dir = Path(run_dir)
    name = (f"{summary['dataset']} {summary['split']}, {summary['num']} queries, {len(gallery)} references, "
            f"{Path(summary['checkpoint']).name}")
    ks = list(range(1, curve_max_k(len(gallery)) + 1))
    recall = ranking.recall(ks)
    curve = recall_curve_figure(ks, {"p2s": [recall[f"r@{k}"] for k in ks]}, len(gallery), name)
    written = {"recall_curve": save_figure(curve, run_dir / "recall_curve.png")}
    retrievals = query_retrievals(descriptors, queries, gallery, ranking, errors_m)
    written["retrievals"] = save_figure(
        retrievals_figure(retrievals, f"{name}: queries and their top-{min(REPORT_TOP_K, len(gallery))} aerial tiles "
                                      "(green: positive or semi-positive; d = 2 - 2 cos)"),
        run_dir / "retrievals.png")
    if errors_m is not None:
        written["localization_error"] = save_figure(localization_figure(errors_m, name),
                                                    run_dir / "localization_error.png")
    table = append_results_row(results_csv, results_row(summary, run_dir))
    if table is not None:
        written["results_csv"] = table
    return written
