"""A quick look at a written world: a few aerial / panorama pairs side by side."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def plot_pairs(root: str | Path, png_path: str | Path, n: int = 6, split: str = "val") -> Path:
    """Save `n` aerial/panorama pairs of a written world (its folder or its CVUSA folder) side by side as a PNG.

    The aerial images get a red cross at the camera's position, the panoramas compass ticks (S W N E S,
    as utils.figures.label_panorama draws them; not imported here, to keep torch out of the generator).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    root = Path(root)
    cvusa = root / "CVUSA" if (root / "CVUSA").is_dir() else root
    csv_path = cvusa / "splits" / f"{split}-19zl.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found: expected a folder written by dataset.synthetic.generate")
    rows = [line.split(",") for line in csv_path.read_text().splitlines() if line.strip()]
    rows = [rows[i] for i in np.linspace(0, len(rows) - 1, min(n, len(rows))).astype(int)]
    raw = not (cvusa / "sat").is_dir()  # written with real_sizes: the download's layout, as the CSV names it
    ids = [Path(row[0]).stem for row in rows]
    figure = Figure(figsize=(11.0, 2.25 * len(ids)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(ids), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 4]})
    for (sat_axis, grd_axis), pair_id, row in zip(axes, ids, rows, strict=True):
        sat_path, grd_path = (cvusa / row[0], cvusa / row[1]) if raw else \
            (cvusa / "sat" / f"{pair_id}.jpg", cvusa / "grd" / f"{pair_id}.png")
        sat = cv2.cvtColor(cv2.imread(str(sat_path)), cv2.COLOR_BGR2RGB)
        grd = cv2.cvtColor(cv2.imread(str(grd_path)), cv2.COLOR_BGR2RGB)
        sat_axis.imshow(sat)
        sat_axis.plot([sat.shape[1] / 2 - 0.5], [sat.shape[0] / 2 - 0.5], marker="+", color="red", markersize=10, mew=2)
        sat_axis.set_title(f"{pair_id}, north up", fontsize=8)
        sat_axis.set_axis_off()
        grd_axis.imshow(grd)
        width = grd.shape[1]
        grd_axis.set_xticks([0, width / 4, width / 2, 3 * width / 4, width], ["S", "W", "N", "E", "S"], fontsize=9)
        grd_axis.set_yticks([])
    figure.savefig(png_path, dpi=90)
    return Path(png_path)
