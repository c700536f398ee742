"""The pieces every entry point builds the same way: the LightningModule, the DataModule, the Trainer."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from dataset.datamodule import DATAMODULES, default_num_workers
from dataset.errors import DatasetError, name_paths
from engine.cluster import external_launcher
from engine.config import config_of
from engine.continuation import OPTIONS_KEY
from engine.devices import Devices, is_first_process
from engine.logs import FILE_ONLY
from engine.options import UsageError, check_field_of_view
from model.backbone import PretrainedWeightsUnavailable
from model.lightning import AtomicCheckpointIO, CrossViewModule, NonFiniteLossError
from model.loss import LOSSES
from model.onnx_export import OnnxUnavailable
from utils.checkpoint import CheckpointError
from utils.files import write_text_atomically
from utils.image_cache import CacheDirError
from utils.image_check import find_bad_images, read_record, record_path, write_record
from utils.images import ImageReadError
from utils.onnx_runtime import OnnxRuntimeError

# A user's mistake, reported in one line with exit code 2 by every entry point.
KNOWN_ERRORS = (UsageError, DatasetError, CheckpointError, ImageReadError, PretrainedWeightsUnavailable,
                NonFiniteLossError, CacheDirError, OnnxUnavailable, OnnxRuntimeError)


def build_module(opt: argparse.Namespace, **kwargs: Any) -> CrossViewModule:
    """The LightningModule of the configured network; training's hyperparameters come from `opt` too."""
    config = config_of(opt)
    if opt.loss not in LOSSES:
        raise UsageError(f"--loss {opt.loss}: expected one of {', '.join(LOSSES)}")
    return CrossViewModule(
        sat_size=config.sat_size, grd_size=config.grd_size, sa_num=config.sa_num, use_fc=config.use_fc, fov=config.fov,
        backbone=config.backbone, loss=opt.loss,
        lr=opt.lr, b1=opt.b1, b2=opt.b2, lambda_sm=opt.lambda_sm,
        hard_topk_ratios=(opt.hard_topk_ratio, opt.hard_decay1_topk_ratio, opt.hard_decay2_topk_ratio,
                          opt.hard_decay3_topk_ratio),
        channels_last=opt.channels_last, compile_net=opt.compile, global_negatives=opt.global_negatives,
        lr_schedule=opt.lr_schedule, lr_warmup=opt.lr_warmup, **kwargs,
    )


def dataset_name(opt: argparse.Namespace) -> str:
    """The dataset the flags name (`--CVUSA` ..., one of `DATAMODULES`; CVUSA when none is, as in the authors'
    parser), its view flags checked."""
    chosen = [name for name in DATAMODULES if getattr(opt, name, False)]
    if len(chosen) > 1:
        flags = [f"--{name}" for name in DATAMODULES]
        raise UsageError(f"pass one of {', '.join(flags[:-1])} and {flags[-1]}, not "
                         f"{' and '.join('--' + name for name in chosen)}")
    check_field_of_view(opt.fov, getattr(opt, "orientation_noise", 0.0))
    return chosen[0] if chosen else next(iter(DATAMODULES))


def build_datamodule(opt: argparse.Namespace) -> pl.LightningDataModule:
    """The data module of the dataset the flags name (`dataset.datamodule.DATAMODULES`), with the loader
    settings every dataset takes."""
    common = {"sat_size": (opt.sat_size_h, opt.sat_size_w), "grd_size": (opt.grd_size_h, opt.grd_size_w),
              "batch_size": opt.batch_size, "batch_size_val": opt.batch_size_val, "num_workers": opt.num_workers,
              "fov": opt.fov, "orientation_noise": opt.orientation_noise, "seed": opt.seed, "cache_dir": opt.cache_dir}
    return DATAMODULES[dataset_name(opt)].from_options(opt, **common)


BAD_IMAGES_FILE = "bad_images.txt"


def check_images(datamodule: pl.LightningDataModule, run_dir: Path, log: logging.Logger) -> None:
    """Decode every image of the splits in use before the first step; list all bad ones in the run folder and
    stop with a line naming the first few. Images a previous check found good, unchanged, are not decoded.

    Every process calls it. In a job that torchrun or srun started, the processes have joined by now: they
    share the images out, and rank 0 records and reports what they all found. Lightning's own launcher
    starts its other processes later, from data rank 0 has checked, so they skip it.
    """
    joined = dist.is_available() and dist.is_initialized()
    if not joined and not is_first_process():
        return
    rank, world = (dist.get_rank(), dist.get_world_size()) if joined else (0, 1)
    paths = list(dict.fromkeys(os.path.abspath(path) for path in datamodule.image_paths()))
    record = record_path(paths)
    start = time.perf_counter()
    found = find_bad_images(paths[rank::world], default_num_workers(), read_record(record))
    if world > 1:
        shares: list[Any] = [None] * world
        dist.all_gather_object(shares, found)
        found = ([item for bad, _ in shares for item in bad], {k: v for _, good in shares for k, v in good.items()})
    if rank != 0:
        return
    bad, good = found
    seconds = time.perf_counter() - start
    decoded = len(bad) + len(good)
    log.info("checked %d images in %.1f s: %d decoded, the rest unchanged since a previous check; %d unusable",
             len(paths), seconds, decoded, len(bad), extra=None if decoded and seconds >= 10 else FILE_ONLY)
    if good and not write_record(record, good):
        log.info("could not write the record of checked images %s: the next run checks them again", record,
                 extra=FILE_ONLY)
    if bad:
        position = {path: number for number, path in enumerate(paths)}
        bad.sort(key=lambda item: position[item[0]])
        listing = run_dir / BAD_IMAGES_FILE
        write_text_atomically(listing, "".join(f"{path}\t{problem}\n" for path, problem in bad))
        first = name_paths([f"{path} ({problem})" for path, problem in bad])
        raise DatasetError(f"{len(bad)} of {len(paths)} images cannot be used: {first}; all are listed in {listing}")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); without them bf16 is 10x to 100x slower."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(requested: str, devices: Devices) -> tuple[str, str | None]:
    """The precision to run, and for `--precision auto` why it was chosen.

    "auto" is bf16-mixed where the hardware runs bf16 fast (a CUDA GPU with bf16, a CPU with AVX512-BF16 or
    AMX) and 32 elsewhere; any other value is Lightning's own and passes through.
    """
    if requested != "auto":
        return requested, None
    if devices.accelerator == "gpu":
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "this GPU supports bf16"
        return "32", "this GPU has no bf16"
    if cpu_has_fast_bf16():
        return "bf16-mixed", "this CPU has bf16 instructions (AVX512-BF16 or AMX)"
    return "32", "this CPU has no bf16 instructions (AVX512-BF16 or AMX)"


class ProgressLines(Callback):
    """Progress as a line every tenth of an epoch, for output that is not a terminal (a log file, CI).

    Lightning's bar redraws itself with carriage returns, which a file keeps as megabytes of one long line.
    """

    def __init__(self, parts: int = 10) -> None:
        self.parts = parts
        self.started = 0.0

    def _line(self, trainer: pl.Trainer, stage: str, batch_idx: int, total: int | float, extra: str = "") -> None:
        if not trainer.is_global_zero or not isinstance(total, int) or total < 1:
            return
        step = max(1, round(total / self.parts))
        if (batch_idx + 1) % step == 0 or batch_idx + 1 == total:
            elapsed = time.perf_counter() - self.started
            print(f"epoch {trainer.current_epoch} {stage}: batch {batch_idx + 1}/{total}{extra}, {elapsed:.0f} s",
                  flush=True)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        extra = f", loss {float(loss):.4f}" if isinstance(loss, torch.Tensor) else ""
        self._line(trainer, "training", batch_idx, trainer.num_training_batches, extra)

    def _eval_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def _eval_batch(self, trainer: pl.Trainer, batches: list[int | float], stage: str, batch_idx: int,
                    dataloader_idx: int) -> None:
        self._line(trainer, stage if len(batches) == 1 else f"{stage} loader {dataloader_idx}", batch_idx,
                   batches[dataloader_idx])

    on_validation_epoch_start = on_test_epoch_start = _eval_start

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, trainer.num_val_batches, "validation", batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, trainer.num_test_batches, "test", batch_idx, dataloader_idx)


def build_trainer(opt: argparse.Namespace, devices: Devices, **kwargs: Any) -> pl.Trainer:
    """The Trainer both scripts use: devices from --gpu, precision, determinism, no sanity validation.

    The data modules shard their loaders themselves: training batches fixed by seed and epoch on any number of
    processes and workers, VIGOR's free of false negatives.
    Where standard output is not a terminal, progress comes as lines (`ProgressLines`) instead of a bar.
    """
    if devices.accelerator == "gpu":
        torch.backends.cudnn.benchmark = not opt.deterministic
    elif "bf16" in str(opt.precision) and not cpu_has_fast_bf16():
        print(f"warning: --precision {opt.precision}: this CPU has no bf16 instructions (AVX512-BF16 or AMX), "
              "so bf16 runs more than 10x slower than float32 here; --precision 32 is faster", file=sys.stderr)
    if not sys.stdout.isatty():
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), ProgressLines()]
        kwargs["enable_progress_bar"] = False
    plugins: list[Any] = [AtomicCheckpointIO()]
    if isinstance(external_launcher(), SLURMEnvironment):  # preemption is StopOnSignal's: no hpc_ckpt_N.ckpt piles
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return pl.Trainer(
        plugins=plugins,
        accelerator=devices.accelerator,
        devices=devices.devices,
        strategy=devices.strategy,
        num_nodes=opt.num_nodes,
        precision=opt.precision,
        deterministic=opt.deterministic,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # the data modules shard their own loaders (dataset/datamodule.py)
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
