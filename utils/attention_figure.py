"""The spatial-aware attention maps of both branches drawn over their images, as in the paper's figure.

For each pair: the aerial image and the panorama, each followed by its K attention maps (the model without
FC layers has one: the channel-wise max-pooled map). Each map is upsampled to its image and laid over it
with a colormap, scaled to its own range, since only where a map is high matters, not its scale.

The functions take any network with `attention_maps(sat, grd)` (model.network.CrossViewNet); the command
line on top of them is visualize.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure, SubFigure
from torch import nn

from utils.figures import label_panorama, new_figure, to_hwc
from utils.images import to_model_range

COLORMAP = "jet"
ALPHA = 0.5
PANORAMA_COLUMNS = 3
CELL_INCHES = 1.45


@torch.no_grad()
def attention_maps_for(
    net: nn.Module, sat_uint8: torch.Tensor, grd_uint8: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The aerial and ground attention maps of `net` (a CrossViewNet) for uint8 images, on the CPU.

    Images are (3, H, W) or (B, 3, H, W); maps come back as (K, H/8, W/8) or (B, K, H/8, W/8), float32,
    with K = 1 (the max-pooled map) for a model without FC layers. The network runs in eval mode.
    """
    single = sat_uint8.ndim == 3
    if single:
        sat_uint8, grd_uint8 = sat_uint8.unsqueeze(0), grd_uint8.unsqueeze(0)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        sat_maps, grd_maps = net.attention_maps(to_model_range(sat_uint8.to(device)),
                                                to_model_range(grd_uint8.to(device)))
    finally:
        net.train(was_training)
    sat_maps, grd_maps = sat_maps.float().cpu(), grd_maps.float().cpu()
    return (sat_maps[0], grd_maps[0]) if single else (sat_maps, grd_maps)


def upsampled(maps: torch.Tensor, size_hw: tuple[int, int]) -> np.ndarray:
    """(K, h, w) maps -> (K, H, W) bilinear to the image size, each scaled to 0..1 by its own min and max."""
    large = nn.functional.interpolate(maps[None], size=tuple(size_hw), mode="bilinear", align_corners=False)[0]
    low = large.amin(dim=(1, 2), keepdim=True)
    high = large.amax(dim=(1, 2), keepdim=True)
    return ((large - low) / (high - low).clamp_min(1e-12)).numpy()


def _draw_overlays(panel: SubFigure, image: np.ndarray, maps: np.ndarray, columns: int, panorama: bool,
                   compass: bool = True) -> None:
    """The image then one overlay per map, `columns` to a row; compass ticks under a whole panorama."""
    count = 1 + len(maps)
    rows = math.ceil(count / columns)
    grid = panel.subplots(rows, columns, squeeze=False)
    names = ["max-pooled map"] if len(maps) == 1 else [f"map {k + 1}" for k in range(len(maps))]
    for position, axes in enumerate(grid.flat):
        if position >= count:
            axes.set_axis_off()
            continue
        axes.imshow(image)
        if position == 0:
            ground = "panorama" if compass else "ground view"
            axes.set_title(ground if panorama else "aerial (north up)", fontsize=8)
        else:
            axes.imshow(maps[position - 1], cmap=COLORMAP, alpha=ALPHA, vmin=0.0, vmax=1.0)
            axes.set_title(names[position - 1], fontsize=8)
        if panorama and compass:
            label_panorama(axes, image.shape[1], fontsize=6)
        else:
            axes.set_axis_off()


def attention_figure(net: nn.Module, samples: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Per sample, the aerial image and its K maps in a row, then the panorama and its K maps.

    `samples` are dataset samples: uint8 CHW "sat" and "grd", and optionally "id". A limited field of view
    (samples with "turn_deg") is drawn without compass ticks, its maps in one row when the view is narrow.
    """
    sat = torch.stack([s["sat"] for s in samples])
    grd = torch.stack([s["grd"] for s in samples])
    sat_maps, grd_maps = attention_maps_for(net, sat, grd)
    count = 1 + sat_maps.shape[1]
    grd_aspect = grd.shape[3] / grd.shape[2]
    aerial_columns = count
    whole = "turn_deg" not in samples[0]
    panorama_columns = min(PANORAMA_COLUMNS, count) if grd_aspect >= 2 else count
    width = max(aerial_columns * CELL_INCHES, panorama_columns * (grd_aspect * CELL_INCHES * 0.8))
    aerial_height = CELL_INCHES + 0.3
    panorama_height = math.ceil(count / panorama_columns) * (width / panorama_columns / grd_aspect + 0.45)
    sample_height = aerial_height + panorama_height + 0.35
    figure = new_figure(width, sample_height * len(samples) + (0.4 if title else 0))
    panels = np.atleast_1d(figure.subfigures(len(samples), 1))
    for index, (panel, sample) in enumerate(zip(panels, samples, strict=True)):
        panel.suptitle(f"sample {sample.get('id', index)}", fontsize=9, fontweight="bold")
        aerial_panel, panorama_panel = panel.subfigures(2, 1, height_ratios=[aerial_height, panorama_height])
        _draw_overlays(aerial_panel, to_hwc(sample["sat"]), upsampled(sat_maps[index], sat.shape[2:]),
                       aerial_columns, panorama=False)
        _draw_overlays(panorama_panel, to_hwc(sample["grd"]), upsampled(grd_maps[index], grd.shape[2:]),
                       panorama_columns, panorama=True, compass=whole)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
