"""The model's configuration for a call: what the checkpoint says, with what the command line gave on top."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from torch import nn

from utils.checkpoint import CheckpointError, ModelConfig, load_model_state, model_config, model_state
from utils.cli import flag_text

MODEL_FLAGS = ("sat_size_h", "sat_size_w", "grd_size_h", "grd_size_w", "sa_num", "no_fc", "fov")


def config_flags(config: ModelConfig) -> dict[str, Any]:
    """The command-line values that build a network of `config`."""
    return {"sat_size_h": config.sat_size[0], "sat_size_w": config.sat_size[1], "grd_size_h": config.grd_size[0],
            "grd_size_w": config.grd_size[1], "sa_num": config.sa_num, "no_fc": not config.use_fc, "fov": config.fov}


def config_of(opt: argparse.Namespace) -> ModelConfig:
    return ModelConfig((opt.sat_size_h, opt.sat_size_w), (opt.grd_size_h, opt.grd_size_w), opt.sa_num, not opt.no_fc,
                       opt.fov)


def fill_from_checkpoint(
    opt: argparse.Namespace, given: set[str], ckpt: Mapping[str, Any], source: str
) -> ModelConfig | None:
    """Set the model flags the command line left out to the checkpoint's; returns what the checkpoint says.

    The result is None for published weights and bare state dicts, which do not state their image sizes
    (`utils.checkpoint.model_config` infers the rest from their tensors).
    """
    config, stated = model_config(ckpt, source)
    for name, value in config_flags(config).items():
        if name not in given:
            setattr(opt, name, value)
    return config if stated else None


def load_checkpoint_weights(
    net: nn.Module,
    ckpt: Mapping[str, Any],
    source: str,
    opt: argparse.Namespace,
    given: set[str],
    stated: ModelConfig | None,
) -> None:
    """Load the weights; a given flag that contradicts the checkpoint stops with one line.

    Most contradictions change a tensor's shape and get load_model_state's message naming the tensor and
    the flag. Some do not (aerial 32x128 has the positions of 64x64): those are caught against what the
    checkpoint says it was trained with.
    """
    load_model_state(net, model_state(ckpt, source), source)
    if stated is None:
        return
    trained = config_flags(stated)
    for name in MODEL_FLAGS:
        if name in given and getattr(opt, name) != trained[name] and not (name == "sa_num" and not stated.use_fc):
            raise CheckpointError(f"{source} was trained with {flag_text(name, trained[name])}, but "
                                  f"{flag_text(name, getattr(opt, name))} was given; drop the flag, the checkpoint "
                                  "gives it")
