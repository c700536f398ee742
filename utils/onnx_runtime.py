"""The exported branches (`export.py --format onnx`) run with onnxruntime: descriptors without PyTorch's network.

onnxruntime is optional: a missing one is one line naming what to install.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

AERIAL_FILE, GROUND_FILE = "aerial.onnx", "ground.onnx"


class OnnxRuntimeError(RuntimeError):
    """onnxruntime is missing, or a folder holds no exported branches."""


class OnnxBranch:
    """One exported branch: images (B, 3, H, W) float32 in [-1, 1] -> descriptors (B, D) float32."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise OnnxRuntimeError("running the ONNX graphs needs onnxruntime: pip install onnxruntime") from None
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_name = self.session.get_inputs()[0].name
        self.image_size = (int(self.metadata["image_height"]), int(self.metadata["image_width"]))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.float32)})[0]


def load_branches(folder: str | os.PathLike, threads: int | None = None) -> tuple[OnnxBranch, OnnxBranch]:
    """The aerial and the ground branch exported into `folder`."""
    folder = Path(folder)
    missing = [name for name in (AERIAL_FILE, GROUND_FILE) if not (folder / name).is_file()]
    if missing:
        raise OnnxRuntimeError(f"--onnx {folder}: no {' or '.join(missing)} there; expected the folder written by "
                               "python export.py CHECKPOINT DIR --format onnx")
    return OnnxBranch(folder / AERIAL_FILE, threads), OnnxBranch(folder / GROUND_FILE, threads)
