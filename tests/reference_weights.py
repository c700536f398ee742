"""The reference checkpoint of `tests/fixtures/`, rebuilt from its manifest by the fixtures' closed-form rule.

The authors' code was run on weights that anyone can rebuild without a large file: the manifest
(`reference_state_small.json`) lists every tensor of the model's state dict, and tensor number i, counting the
keys in sorted order from 0, holds standard normal draws from numpy's legacy `RandomState(1000 + i)`, scaled
by the kind of tensor (`scaled_draws`). Batch-norm step counters are zeros. The checkpoint wraps those weights
in the dictionary the published checkpoints use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

SEED_BASE = 1000


def scaled_draws(key: str, draws: np.ndarray) -> np.ndarray:
    """Standard normal draws shaped as tensor `key`, scaled as the fixtures' rule scales that kind of tensor."""
    if key.endswith("running_var"):
        return 1.0 + 0.1 * np.abs(draws)
    if key.endswith(("running_mean", ".bias", "b1", "b2")):  # b1, b2: the spatial-aware heads' biases
        return 0.1 * draws
    if draws.ndim == 4:  # a convolution: He's scale on its fan-in
        return draws * np.sqrt(2.0 / np.prod(draws.shape[1:]))
    if draws.ndim == 3:  # a spatial-aware weight (in, out, maps)
        return draws / np.sqrt(draws.shape[0])
    return 1.0 + 0.1 * draws  # a batch-norm scale


def reference_state_dict(manifest: Path) -> dict[str, torch.Tensor]:
    """Every tensor the manifest lists, under the published checkpoints' key names."""
    shapes = {key: tuple(shape) for key, shape, _ in json.loads(Path(manifest).read_text())["keys"]}
    state = {}
    for number, key in enumerate(sorted(shapes)):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        draws = np.random.RandomState(SEED_BASE + number).standard_normal(int(np.prod(shape))).reshape(shape)
        state[key] = torch.from_numpy(scaled_draws(key, draws).astype(np.float32))
    return state


def reference_checkpoint(manifest: Path) -> dict:
    """The whole checkpoint dictionary, in the format of the authors' published weights."""
    return {"last_epoch": 41, "best_acc": 12.5, "count": 1234,
            "retrieval_model_dict": reference_state_dict(manifest), "optimizer_dict": {}}
