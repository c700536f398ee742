"""Reading the published checkpoints and this project's own, and writing this project's in the published format.

`export_published` (`python export.py RUN/best.ckpt OUT.pth`) writes a checkpoint of this project as the
authors' code saves and loads them: `{"last_epoch", "best_acc", "count", "retrieval_model_dict", "optimizer_dict"}`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.images import field_of_view_width

PUBLISHED_MODEL_KEY = "retrieval_model_dict"
PUBLISHED_KEYS = ("last_epoch", "best_acc", "count", PUBLISHED_MODEL_KEY, "optimizer_dict")
LIGHTNING_MODEL_PREFIX = "net."
DATA_PARALLEL_PREFIX = "module."
BEST_METRIC = "val/p2s_r@1"  # ground -> aerial R@1, the number papers report and best.ckpt is chosen by


@dataclass(frozen=True)
class ModelConfig:
    """What the network's tensor shapes depend on; the defaults are the paper's.

    `grd_size` is the size panoramas are resized to; with a limited field of view `fov` (degrees) the ground
    branch sees only a slice of it, `net_grd_size`.
    """

    sat_size: tuple[int, int] = (256, 256)
    grd_size: tuple[int, int] = (128, 512)
    sa_num: int = 8
    use_fc: bool = True
    fov: float = 360.0
    backbone: str = "resnet34"

    @property
    def net_grd_size(self) -> tuple[int, int]:
        return self.grd_size[0], field_of_view_width(self.grd_size[1], self.fov)


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
    elif "state_dict" in ckpt:  # this project's: the network's under net., the loss's own parameters apart
        state = ckpt["state_dict"]
        if isinstance(state, Mapping) and any(key.startswith(LIGHTNING_MODEL_PREFIX) for key in state):
            state = {key: value for key, value in state.items() if key.startswith(LIGHTNING_MODEL_PREFIX)}
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
    view = "--sat_size_h/--sat_size_w" if key.startswith("sa1.") else "--grd_size_h/--grd_size_w/--fov"
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
        hint = "; check --backbone" if any(key.startswith("extract") for key in missing + unexpected) else ""
        raise CheckpointError(f"{source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
                              f"{hint}")
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


def is_published(ckpt: Mapping[str, Any]) -> bool:
    return PUBLISHED_MODEL_KEY in ckpt


def is_lightning(ckpt: Mapping[str, Any]) -> bool:
    """A checkpoint written by this project's training (a Lightning checkpoint), as opposed to bare weights."""
    return "state_dict" in ckpt and "hyper_parameters" in ckpt


def model_config(ckpt: Mapping[str, Any], source: str = "checkpoint") -> tuple[ModelConfig, bool]:
    """The configuration a checkpoint's network was built with, and whether the checkpoint says so itself.

    This project's checkpoints carry it (True); those written before backbones had names used ResNet-34.
    For published weights and bare state dicts (False), the number of attention maps and FC or not follow
    from the tensors, the backbone is the paper's (`engine.config` tells others by their tensors), and the
    image sizes are the paper's, since the heads' sizes give only the number of positions, not their shape.
    """
    stored = ckpt.get("hyper_parameters")
    if isinstance(stored, Mapping) and {"sat_size", "grd_size", "sa_num", "use_fc"} <= set(stored):
        return ModelConfig(tuple(int(v) for v in stored["sat_size"]), tuple(int(v) for v in stored["grd_size"]),
                           int(stored["sa_num"]), bool(stored["use_fc"]), float(stored.get("fov", 360.0)),
                           str(stored.get("backbone", ModelConfig.backbone))), True
    state = model_state(ckpt, source)
    if "sa1.w1" not in state:
        return ModelConfig(use_fc=False), False
    return ModelConfig(sa_num=int(state["sa1.w1"].shape[2])), False


def best_score(ckpt: Mapping[str, Any]) -> float | None:
    """The best validation p2s R@1 a Lightning checkpoint's best.ckpt callback had seen, or None."""
    for state in (ckpt.get("callbacks") or {}).values():
        score = state.get("best_model_score") if isinstance(state, Mapping) else None
        if score is not None and state.get("monitor") == BEST_METRIC:
            return float(score)
    return None


def to_published(ckpt: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Any]:
    """Any accepted checkpoint in the published format, with the authors' key names and meanings.

    `last_epoch` is the last epoch trained, counted as the hard-negative schedule counts it (a run continued
    from a published checkpoint included), so the authors' code continues at `last_epoch + 1` as this project
    does; `best_acc` is the run's best validation p2s R@1 (0.0 when unknown, the authors' starting value);
    `count` is the number of optimiser steps; `optimizer_dict` the Adam state, whose parameter order is the
    authors' (extract1, extract2, sa1, sa2).
    """
    state = {key: value.contiguous() for key, value in model_state(ckpt, source).items()}
    if is_published(ckpt):
        return {**{key: ckpt.get(key) for key in PUBLISHED_KEYS}, PUBLISHED_MODEL_KEY: state,
                "optimizer_dict": ckpt.get("optimizer_dict") or {}}
    if not is_lightning(ckpt):
        return {"last_epoch": -1, "best_acc": 0.0, "count": 0, PUBLISHED_MODEL_KEY: state, "optimizer_dict": {}}
    offset = int(ckpt["hyper_parameters"].get("epoch_offset", 0))
    optimizers = ckpt.get("optimizer_states") or [{}]
    best = best_score(ckpt)
    return {
        "last_epoch": offset + int(ckpt["epoch"]),
        "best_acc": 0.0 if best is None else best,
        "count": int(ckpt.get("global_step", 0)),
        PUBLISHED_MODEL_KEY: state,
        "optimizer_dict": optimizers[0],
    }


def export_published(source: str | os.PathLike, destination: str | os.PathLike) -> dict[str, Any]:
    """Write `source` in the published format to `destination`, beside it first and then renamed over it."""
    published = to_published(read_checkpoint(source), str(source))
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    torch.save(published, partial)
    os.replace(partial, destination)
    return published
