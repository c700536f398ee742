"""Train the lightweight cross-view network on CVUSA, CVACT or VIGOR: `python train.py --CVUSA --data_root_cvusa DIR`.

`--resume RUN_DIR` continues a run with its own options; `--checkpoint` starts from published weights (or
continues this project's checkpoint); `--test` evaluates `--checkpoint` exactly as test.py does.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from engine.build import (
    KNOWN_ERRORS,
    RunCheckpoint,
    StoreOptions,
    build_datamodule,
    build_module,
    build_trainer,
    check_images,
    dataset_name,
    resolve_precision,
)
from engine.cluster import job_run_dir
from engine.config import fill_from_checkpoint, load_checkpoint_weights
from engine.continuation import OPTIONS_FILE, continue_options, stored_options
from engine.devices import is_first_process, parse_devices
from engine.exit import run_main
from engine.interruption import StopOnSignal, slurm_job_id
from engine.logs import FILE_ONLY, setup_logging, start_logging
from engine.options import (
    TESTING_ONLY,
    UsageError,
    build_parser,
    describe_options,
    parse_options,
    unused_options,
    with_options,
)
from engine.run_folder import RUN_DIR_ENV, default_run_name, make_run_dir
from engine.run_lock import hold_run_folder
from utils.checkpoint import BEST_METRIC, CheckpointError, is_lightning, is_published, read_checkpoint
from utils.files import write_json_atomically


def epochs_trained(ckpt: dict[str, Any] | None) -> tuple[int, int]:
    """(epoch offset of the schedule, epochs trained so far) of the checkpoint training starts from.

    A published checkpoint has trained `last_epoch + 1` epochs, and its continuation counts on from there;
    this project's carries its own offset plus the epochs of its run, the one it stopped in not counted.
    """
    if ckpt is None:
        return 0, 0
    if is_published(ckpt):
        offset = int(ckpt.get("last_epoch", -1)) + 1
        return offset, offset
    if is_lightning(ckpt):
        offset = int(ckpt["hyper_parameters"].get("epoch_offset", 0))
        epochs = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        mid_epoch = epochs.get("processed", 1) == epochs.get("completed", 0)  # stopped by a signal within its epoch
        return offset, offset + int(ckpt.get("epoch", -1)) + (0 if mid_epoch else 1)
    return 0, 0


def resumed_checkpoint(run: Path) -> dict[str, Any]:
    """The last checkpoint of the run folder `--resume` names, or a line saying why there is none to continue
    from and what to do instead."""
    last = run / "last.ckpt"
    if not last.is_file():
        if (run / OPTIONS_FILE).is_file():
            raise UsageError(f"--resume {run}: the run stopped before its first checkpoint (during its first epoch), "
                             f"so there is nothing to continue; start it again with the options in "
                             f"{run / OPTIONS_FILE}")
        raise UsageError(f"--resume {run}: no last.ckpt there; expected a run folder written by train.py")
    try:
        return read_checkpoint(last)
    except CheckpointError as exc:
        best = run / "best.ckpt"
        instead = (f"; --checkpoint {best} starts again from the best epoch" if best.is_file() else "")
        raise CheckpointError(f"--resume {run}: {exc}{instead}") from None


def slurm_job_run(opt: argparse.Namespace) -> dict[str, str]:
    """Under SLURM, a run without --name or --resume is named after its job, so a requeued job (which runs the
    same command line) finds its own folder and continues it: the folder of that name, or its numbered
    sibling, with the newest last.ckpt. Returns the options that say so: the run's `name`, and `resume` when a
    folder of the job has a checkpoint to continue."""
    job = slurm_job_id()
    if job is None or opt.resume or opt.name:
        return {}
    name = f"{dataset_name(opt)}_train_job{job}"
    base = Path(opt.results_dir) / name
    runs = [run for run in (base, *base.parent.glob(f"{base.name}_[0-9]*")) if (run / "last.ckpt").is_file()]
    if not runs:
        return {"name": name}
    return {"name": name, "resume": str(max(runs, key=lambda run: (run / "last.ckpt").stat().st_mtime))}


def main(argv: list[str] | None = None) -> int:
    opt, given = parse_options(build_parser(__doc__), argv)
    if opt.test:  # the authors' one entry point tested with --test; test.py runs the same
        from test import main as test_main

        return test_main(argv)
    start_logging(verbose=opt.debug)
    job_run = slurm_job_run(opt)
    opt = with_options(opt, **job_run)
    requeued = job_run.get("resume")
    if opt.resume:
        opt = with_options(opt, checkpoint=str(Path(opt.resume) / "last.ckpt"))
        ckpt = resumed_checkpoint(Path(opt.resume))
    else:
        ckpt = read_checkpoint(opt.checkpoint) if opt.checkpoint else None
    continuing = ckpt is not None and is_lightning(ckpt)
    if opt.resume and not continuing:
        raise UsageError(f"--resume {opt.resume}: {opt.checkpoint} is not a checkpoint written by train.py")
    stored = stored_options(ckpt, opt.checkpoint) if continuing else None
    changed = []
    if stored:
        opt, changed = continue_options(opt, given, stored, opt.checkpoint)
    stated = None
    if ckpt is not None:
        opt, stated = fill_from_checkpoint(opt, given, ckpt, opt.checkpoint)
    name = dataset_name(opt)
    devices = parse_devices(opt.gpu_ids, opt.cpu_procs, num_nodes=opt.num_nodes)
    precision, precision_reason = resolve_precision(opt.precision, devices)
    opt = with_options(opt, precision=precision)
    if opt.max_time is not None and not opt.max_time > 0:
        raise UsageError(f"--max_time {opt.max_time:g}: expected minutes > 0")
    if not 0 <= opt.lr_warmup < 1:
        raise UsageError(f"--lr_warmup {opt.lr_warmup:g}: expected a share of the run in [0, 1)")
    pl.seed_everything(opt.seed, workers=True, verbose=False)

    epoch_offset, trained = epochs_trained(ckpt)
    if trained >= opt.n_epochs:
        raise UsageError(f"--n_epochs {opt.n_epochs}: the checkpoint already trained {trained} epochs; --n_epochs "
                         "is the total, continued epochs included")
    module = build_module(opt, pretrained=ckpt is None and not opt.no_pretrained, epoch_offset=epoch_offset)
    if ckpt is not None:
        load_checkpoint_weights(module.net, ckpt, opt.checkpoint, opt, given, stated)
        if is_published(ckpt) and not opt.reset_optimizer:
            module.initial_optimizer_state = ckpt.get("optimizer_dict") or None

    datamodule = build_datamodule(opt)
    datamodule.setup("fit")
    train_size = len(datamodule.train_dataset)
    if train_size < 2 or opt.batch_size > train_size:
        raise UsageError(f"--batch_size {opt.batch_size}: the training split has {train_size} pairs; hard-negative "
                         "mining needs a batch of at least 2 pairs, no larger than the split")

    continued_run = Path(opt.checkpoint).parent if continuing else None
    if continued_run is not None and (continued_run / OPTIONS_FILE).is_file():
        run_dir = continued_run
        os.environ[RUN_DIR_ENV] = str(run_dir)
    else:
        run_dir = job_run_dir(lambda: make_run_dir(opt.results_dir, opt.name or default_run_name(f"{name}_train")),
                              devices)
    same_folder = run_dir == continued_run
    if is_first_process():
        hold_run_folder(run_dir)
    log = setup_logging(run_dir, verbose=opt.debug)
    options = {key: value for key, value in vars(opt).items() if key not in ("resume", "test")}
    if is_first_process():
        if requeued is not None:
            log.info("SLURM job %s started again: continuing its run %s", slurm_job_id(), requeued)
        write_json_atomically(run_dir / OPTIONS_FILE, options)
        log.info(describe_options(opt), extra=FILE_ONLY)  # options.json has them too
        describe_start(log, opt, given, ckpt, run_dir, same_folder, changed, trained)
        if precision_reason:
            log.info("--precision auto: %s, since %s", opt.precision, precision_reason)

    check_images(datamodule, run_dir, log)
    if is_first_process():
        warn_if_checkpoints_cannot_fit(log, module, run_dir, opt, trained)
    best = RunCheckpoint(dirpath=run_dir, filename="best", monitor=BEST_METRIC, mode="max", save_top_k=1,
                         enable_version_counter=False, restore=same_folder)
    last = RunCheckpoint(dirpath=run_dir, filename="last", save_top_k=1, enable_version_counter=False,
                         restore=same_folder)
    periodic = RunCheckpoint(dirpath=run_dir, filename="epoch{epoch:03d}", every_n_epochs=opt.save_step,
                             save_top_k=-1, auto_insert_metric_name=False, restore=same_folder)
    trainer = build_trainer(
        opt, devices,
        max_epochs=opt.n_epochs - epoch_offset,
        callbacks=[best, last, periodic, StoreOptions(options), StopOnSignal(run_dir)],
        logger=TensorBoardLogger(run_dir, name="tensorboard", version=""),
        default_root_dir=run_dir,
        limit_train_batches=42 if opt.debug else None,
        log_every_n_steps=10,
        max_time=None if opt.max_time is None else timedelta(minutes=opt.max_time),
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=opt.checkpoint if continuing else None)
    if trainer.is_global_zero and opt.max_time is not None and trainer.current_epoch < trainer.max_epochs:
        log.info("stopped by --max_time %g after %d epochs of this run (of %d)", opt.max_time, trainer.current_epoch,
                 trainer.max_epochs)
    if trainer.is_global_zero:
        best_score = None if best.best_model_score is None else float(best.best_model_score)
        log.info("best %s: %s (%s)", BEST_METRIC, best_score, best.best_model_path)
        log.info("last checkpoint: %s", last.best_model_path)
        write_json_atomically(run_dir / "summary.json", {
            "best_checkpoint": best.best_model_path, "last_checkpoint": last.best_model_path,
            BEST_METRIC: best_score})
    return 0


def warn_if_checkpoints_cannot_fit(log: logging.Logger, module: pl.LightningModule, run_dir: Path,
                                   opt: argparse.Namespace, trained: int) -> None:
    """A line before training when the run's checkpoints will not fit on its disk: last.ckpt, best.ckpt, the
    --save_step ones and a partial one while writing, each the weights and twice that of Adam's state."""
    checkpoint_bytes = 3 * sum(t.numel() * t.element_size() for t in module.state_dict().values())
    periodic = (opt.n_epochs - trained) // opt.save_step if opt.save_step else 0
    needed = checkpoint_bytes * (3 + periodic)
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        from_save_step = f", {periodic} of them from --save_step {opt.save_step}" if periodic else ""
        log.warning("warning: %s has %.1f GB free, and this run's checkpoints need about %.1f GB (%d of %.0f MB "
                    "each%s)", run_dir, free / 1e9, needed / 1e9, 3 + periodic, checkpoint_bytes / 1e6, from_save_step)


def describe_start(log: logging.Logger, opt: argparse.Namespace, given: set[str], ckpt: dict[str, Any] | None,
                   run_dir: Path, same_folder: bool, changed: list[str], trained: int) -> None:
    """Log lines saying where the run goes and what it starts from."""
    unused = unused_options(opt, given, TESTING_ONLY)
    if unused:
        log.info(unused)
    if same_folder:
        log.info("continuing run %s from %s after %d epochs%s", run_dir, opt.checkpoint, trained,
                 f"; changed: {', '.join(changed)}" if changed else "")
        return
    log.info("run folder: %s", run_dir)
    if ckpt is not None and is_published(ckpt):
        optimizer = ("a fresh Adam (--reset_optimizer)" if opt.reset_optimizer or not ckpt.get("optimizer_dict")
                     else f"its Adam state with --lr {opt.lr:g}, --b1 {opt.b1:g}, --b2 {opt.b2:g}")
        log.info("continuing the published checkpoint %s at epoch %d with %s (its best p2s R@1: %s; this run's "
                 "best.ckpt starts afresh)", opt.checkpoint, trained, optimizer, ckpt.get("best_acc"))
    elif ckpt is not None and is_lightning(ckpt):
        log.info("continuing %s after %d epochs in a new folder", opt.checkpoint, trained)


if __name__ == "__main__":
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")  # scaling on the device, by design
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")  # the run folder holds log.txt already
    warnings.filterwarnings("ignore", ".*dataloader is not resumable.*")  # it is: the data module skips the batches
    run_main(main, KNOWN_ERRORS)
