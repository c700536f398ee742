"""Reading the published checkpoints and this project's own, into the network's key names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

PUBLISHED_MODEL_KEY = "retrieval_model_dict"
LIGHTNING_MODEL_PREFIX = "net."
DATA_PARALLEL_PREFIX = "module."


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, or one that does not fit the configured model."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load on the CPU, with a one-line error for a missing, truncated or foreign file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt archive
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dictionary")
    return dict(ckpt)


def model_state(ckpt: Mapping[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The network's weights from any accepted format, keyed like `CrossViewNet.state_dict()`.

    Accepted: the published format (`retrieval_model_dict`), the same saved from DataParallel
    (`module.` prefix), this project's Lightning checkpoints (`state_dict` with `net.` prefix), and a
    bare state dict.
    """
    if PUBLISHED_MODEL_KEY in ckpt:
        state = ckpt[PUBLISHED_MODEL_KEY]
    elif "state_dict" in ckpt:
        state = ckpt["state_dict"]
    else:
        state = ckpt
    stripped = {_strip_prefixes(k): v for k, v in state.items()} if isinstance(state, Mapping) else {}
    if not any(k.startswith("extract1.") for k in stripped):
        raise CheckpointError(
            f"{source} has no network weights: expected '{PUBLISHED_MODEL_KEY}' (published format) or "
            "'state_dict' (this project) with keys extract1.*, extract2.*, sa1.*, sa2.*"
        )
    return stripped


def _strip_prefixes(key: str) -> str:
    for prefix in (DATA_PARALLEL_PREFIX, LIGHTNING_MODEL_PREFIX):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _flag_for(key: str, dim: int) -> str:
    """The command-line option that decides this tensor's size along `dim`."""
    view = "--sat_size_h/--sat_size_w" if key.startswith("sa1.") else "--grd_size_h/--grd_size_w"
    if key.endswith(("w1", "w2", "b1", "b2")) and dim == 2:
        return "--sa_num"
    return view


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """load_state_dict with a message that names the tensor, both shapes and the flag that would fix it."""
    expected = model.state_dict()
    has_heads = any(k.startswith("sa1.") for k in state)
    wants_heads = any(k.startswith("sa1.") for k in expected)
    if has_heads and not wants_heads:
        raise CheckpointError(f"{source} has spatial-aware FC layers (sa1.w1 ...) but the model was built with "
                              "--no_fc; drop --no_fc")
    if wants_heads and not has_heads:
        raise CheckpointError(f"{source} has no spatial-aware FC layers (trained with --no_fc); pass --no_fc")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, tensor in state.items():
        want = expected[key].shape
        if tensor.shape != want:
            dim = next(i for i, (a, b) in enumerate(zip(tensor.shape, want, strict=False)) if a != b) \
                if len(tensor.shape) == len(want) else 0
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(tensor.shape)} but the model expects {tuple(want)}; "
                f"check {_flag_for(key, dim)}"
            )
    model.load_state_dict(state)


def load_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file of any accepted format into `model`; returns the whole checkpoint."""
    ckpt = read_checkpoint(path)
    load_model_state(model, model_state(ckpt, str(path)), str(path))
    return ckpt
