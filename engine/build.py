"""The pieces every entry point builds the same way: the LightningModule, the DataModule, the Trainer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from dataset.datamodule import CVACTDataModule, CVUSADataModule, VIGORDataModule
from dataset.errors import DatasetError
from engine.config import config_of
from engine.continuation import OPTIONS_KEY
from model.backbone import PretrainedWeightsUnavailable
from model.lightning import AtomicCheckpointIO, CrossViewModule, NonFiniteLossError
from utils.checkpoint import CheckpointError
from utils.cli import Devices, UsageError, dataset_name
from utils.images import ImageReadError

# A user's mistake, reported in one line with exit code 2 by every entry point.
KNOWN_ERRORS = (UsageError, DatasetError, CheckpointError, ImageReadError, PretrainedWeightsUnavailable,
                NonFiniteLossError)


def build_module(opt: argparse.Namespace, **kwargs: Any) -> CrossViewModule:
    """The LightningModule of the configured network; training's hyperparameters come from `opt` too."""
    config = config_of(opt)
    return CrossViewModule(
        sat_size=config.sat_size, grd_size=config.grd_size, sa_num=config.sa_num, use_fc=config.use_fc, fov=config.fov,
        lr=opt.lr, b1=opt.b1, b2=opt.b2, lambda_sm=opt.lambda_sm,
        hard_topk_ratios=(opt.hard_topk_ratio, opt.hard_decay1_topk_ratio, opt.hard_decay2_topk_ratio,
                          opt.hard_decay3_topk_ratio),
        channels_last=opt.channels_last, compile_net=opt.compile, global_negatives=opt.global_negatives, **kwargs,
    )


def build_datamodule(opt: argparse.Namespace) -> pl.LightningDataModule:
    sizes = {"sat_size": (opt.sat_size_h, opt.sat_size_w), "grd_size": (opt.grd_size_h, opt.grd_size_w)}
    loading = {"batch_size": opt.batch_size, "batch_size_val": opt.batch_size_val, "num_workers": opt.num_workers,
               "fov": opt.fov, "orientation_noise": opt.orientation_noise, "seed": opt.seed}
    name = dataset_name(opt)
    if name == "VIGOR":
        return VIGORDataModule(opt.data_root_vigor, mode=opt.vigor_mode, **sizes, **loading)
    if name == "CVACT":
        return CVACTDataModule(opt.data_root_cvact, mat_file=opt.mat_list, eval_split=opt.eval_split,
                               **sizes, **loading)
    return CVUSADataModule(opt.data_root_cvusa, train_csv=opt.train_csv, val_csv=opt.val_csv, **sizes, **loading)


def build_trainer(opt: argparse.Namespace, devices: Devices, **kwargs: Any) -> pl.Trainer:
    """The Trainer both scripts use: devices from --gpu, precision, determinism, no sanity validation.

    VIGOR's data module shards its loaders itself (its training batches must stay free of false negatives).
    """
    if devices.accelerator == "gpu":
        torch.backends.cudnn.benchmark = not opt.deterministic
    elif "bf16" in str(opt.precision) and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print(f"warning: --precision {opt.precision}: this CPU has no bf16 instructions (AVX512-BF16 or AMX), "
              "so bf16 runs more than 10x slower than float32 here; --precision 32 is faster", file=sys.stderr)
    return pl.Trainer(
        plugins=[AtomicCheckpointIO()],
        accelerator=devices.accelerator,
        devices=devices.devices,
        strategy=devices.strategy,
        num_nodes=opt.num_nodes,
        precision=opt.precision,
        deterministic=opt.deterministic,
        num_sanity_val_steps=0,
        use_distributed_sampler=dataset_name(opt) != "VIGOR",
        **kwargs,
    )


class RunCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that keeps its best score when its run folder was moved, or forgets it on request.

    Lightning reloads the best score only when the folder's path is unchanged, so a copied or renamed run
    would replace best.ckpt by its next epoch, however bad. Here the stored paths are moved into the current
    folder instead. `restore=False` starts afresh: a checkpoint continued in a new folder has no best there.
    """

    def __init__(self, *args: Any, restore: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restore = restore

    @property
    def state_key(self) -> str:
        """One key per file name: ModelCheckpoint's own key is the same for `last` and `--save_step 1`."""
        return f"{type(self).__qualname__}[{self.filename}]"

    @property
    def _legacy_state_key(self) -> str:
        """Lightning's fallback key: ModelCheckpoint's, under which checkpoints before this class kept their state."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self.restore:
            return
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:
            state_dict = {key: _moved(value, old, self.dirpath) for key, value in state_dict.items()}
            state_dict["dirpath"] = self.dirpath
        super().load_state_dict(state_dict)


def _moved(value: Any, old: str, new: str) -> Any:
    """Paths under folder `old` (also as the keys of best_k_models) put under `new`."""
    if isinstance(value, str) and value.startswith(old.rstrip("/") + "/"):
        return new.rstrip("/") + value[len(old.rstrip("/")):]
    if isinstance(value, Mapping):
        return {_moved(key, old, new): item for key, item in value.items()}
    return value


class StoreOptions(Callback):
    """Every checkpoint carries the run's options, so --resume needs no flag and no options.json."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[OPTIONS_KEY] = self.options
