"""Image I/O shared by the datasets: decode with OpenCV, hand over uint8 CHW, scale on the device."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class ImageReadError(OSError):
    """An image file that is missing or that OpenCV cannot decode.

    Takes the whole message as its one argument so that PyTorch can re-raise it from a DataLoader worker.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


def read_rgb(path: str | os.PathLike, size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image as uint8 H x W x 3 RGB, resized with INTER_AREA to `size_hw` (H, W) when it differs."""
    if not os.path.isfile(path):
        raise ImageReadError(f"cannot read image {path}: file does not exist", path)
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot read image {path}: not a decodable image", path)
    if size_hw is not None and image.shape[:2] != tuple(size_hw):
        height, width = size_hw
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_chw_tensor(image_hwc: np.ndarray) -> torch.Tensor:
    """H x W x C array -> C x H x W tensor of the same dtype (uint8 stays uint8: 4x less to pin and transfer)."""
    return torch.from_numpy(np.ascontiguousarray(image_hwc.transpose(2, 0, 1)))


def _scaled(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0).sub_(0.5).div_(0.5)


# The 256 values of (x / 255 - 0.5) / 0.5 in float32, computed by the same operations, so a lookup gives equal bits.
_MODEL_RANGE = _scaled(torch.arange(256, dtype=torch.uint8)).numpy()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape) -> float32 in [-1, 1] as the model expects: (x / 255 - 0.5) / 0.5.

    On the CPU it is one table lookup per pixel (cv2.LUT), bit for bit the same and about 5x faster than
    the three tensor operations, which are the CPU's bottleneck once images come from the cache.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 images in 0..255, got {images.dtype}")
    if images.device.type != "cpu" or images.dim() < 2 or images.numel() == 0 or not images.is_contiguous():
        return _scaled(images)
    rows = images.numpy().reshape(-1, images.shape[-1])
    return torch.from_numpy(cv2.LUT(rows, _MODEL_RANGE)).view(images.shape)


def field_of_view_width(width: int, fov_deg: float) -> int:
    """Columns of a `width`-column 360-degree panorama that `fov_deg` degrees span: DSM's `int(FOV / 360 * W)`,
    truncated as its code does, and at least 1."""
    return max(1, int(fov_deg / 360 * width))


def crop_field_of_view(panorama: torch.Tensor, fov_deg: float, shift_deg: float = 0.0) -> torch.Tensor:
    """A limited field of view of a 360-degree panorama (columns last), cut as DSM's code cuts it.

    DSM (generate_test_data_cvact.py) turns a panorama of W columns by `s = int(shift_deg * W / 360)` columns,
    keeping columns `((j - s) % W)[:field_of_view_width(W, fov_deg)]` for j = 0, 1, ...: its first kept column
    is column W - s, so the view starts `shift_deg` to the left of the panorama's left edge. 360 degrees and no
    shift give the input itself.
    """
    width = panorama.shape[-1]
    shift = int(shift_deg * width / 360)
    columns = (torch.arange(field_of_view_width(width, fov_deg)) - shift) % width
    if len(columns) == width and shift % width == 0:
        return panorama
    return panorama.index_select(-1, columns)


def plot_pair(sat: torch.Tensor, grd: torch.Tensor, title: str | None = None) -> Figure:
    """Aerial image and ground panorama (uint8 CHW) side by side, on an Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sat_hwc = sat.permute(1, 2, 0).cpu().numpy()
    grd_hwc = grd.permute(1, 2, 0).cpu().numpy()
    sat_aspect = sat_hwc.shape[1] / sat_hwc.shape[0]
    grd_aspect = grd_hwc.shape[1] / grd_hwc.shape[0]
    figure = Figure(figsize=(3.0 * (sat_aspect + grd_aspect), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    sat_axes, grd_axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [sat_aspect, grd_aspect]})
    sat_axes.imshow(sat_hwc)
    sat_axes.set_title("aerial")
    grd_axes.imshow(grd_hwc)
    grd_axes.set_title("ground panorama")
    for axes in (sat_axes, grd_axes):
        axes.axis("off")
    if title:
        figure.suptitle(title)
    return figure
