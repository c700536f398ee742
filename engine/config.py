"""The model's configuration for a call: what the checkpoint says, with what the command line gave on top."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from engine.options import UsageError, flag_text, with_options
from model.backbone import BACKBONES, backbone_of_state
from utils.checkpoint import CheckpointError, ModelConfig, load_model_state, model_config, model_state

MODEL_FLAGS = ("backbone", "sat_size_h", "sat_size_w", "grd_size_h", "grd_size_w", "sa_num", "no_fc", "fov")


def config_flags(config: ModelConfig) -> dict[str, Any]:
    """The command-line values that build a network of `config`."""
    return {"backbone": config.backbone, "sat_size_h": config.sat_size[0], "sat_size_w": config.sat_size[1],
            "grd_size_h": config.grd_size[0], "grd_size_w": config.grd_size[1], "sa_num": config.sa_num,
            "no_fc": not config.use_fc, "fov": config.fov}


def config_of(opt: argparse.Namespace) -> ModelConfig:
    """The network the model flags describe; the one place flags become a `ModelConfig`."""
    if opt.backbone not in BACKBONES:
        raise UsageError(f"--backbone {opt.backbone}: expected one of {', '.join(BACKBONES)}")
    return ModelConfig((opt.sat_size_h, opt.sat_size_w), (opt.grd_size_h, opt.grd_size_w), opt.sa_num, not opt.no_fc,
                       opt.fov, opt.backbone)


def fill_from_checkpoint(
    opt: argparse.Namespace, given: set[str], ckpt: Mapping[str, Any], source: str
) -> tuple[argparse.Namespace, ModelConfig | None]:
    """The options with the model flags the command line left out set to the checkpoint's, and what the
    checkpoint says of itself.

    The latter is None for published weights and bare state dicts, which do not state their image sizes
    (`utils.checkpoint.model_config` infers the rest from their tensors).
    """
    config, stated = model_config(ckpt, source)
    if not stated:  # published weights or a bare state dict: the backbone whose tensors it holds
        config = replace(config, backbone=backbone_of_state(model_state(ckpt, source)) or config.backbone)
    filled = {name: value for name, value in config_flags(config).items() if name not in given}
    return with_options(opt, **filled), config if stated else None


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
    checkpoint says it was trained with, as is another backbone, whose tensors have other names.
    """
    trained = {} if stated is None else config_flags(stated)
    contradicted = [name for name in MODEL_FLAGS if name in given and name in trained and getattr(opt, name) !=
                    trained[name] and not (name == "sa_num" and not stated.use_fc)]
    if "backbone" not in contradicted:  # another backbone's tensors differ in every name: say which it was
        load_model_state(net, model_state(ckpt, source), source)
    if contradicted:
        name = contradicted[0]  # the backbone first
        raise CheckpointError(f"{source} was trained with {flag_text(name, trained[name])}, but "
                              f"{flag_text(name, getattr(opt, name))} was given; drop the flag, the checkpoint "
                              "gives it")
