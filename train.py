"""Train the lightweight cross-view network on CVUSA or CVACT: `python train.py --CVUSA --data_root_cvusa DIR`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from dataset.datamodule import CVACTDataModule, CVUSADataModule
from dataset.errors import DatasetError
from model.backbone import PretrainedWeightsUnavailable
from model.lightning import AtomicCheckpointIO, CrossViewModule, NonFiniteLossError
from utils.checkpoint import PUBLISHED_MODEL_KEY, CheckpointError, load_model_state, model_state, read_checkpoint
from utils.cli import (
    RUN_DIR_ENV,
    Devices,
    UsageError,
    add_common_options,
    dataset_name,
    default_run_name,
    describe_options,
    make_run_dir,
    parse_devices,
    run_main,
    setup_logging,
    write_json_atomically,
)
from utils.images import ImageReadError

KNOWN_ERRORS = (UsageError, DatasetError, CheckpointError, ImageReadError, PretrainedWeightsUnavailable,
                NonFiniteLossError)
BEST_METRIC = "val/p2s_r@1"  # ground -> aerial R@1, the number papers report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_options(parser)
    add = parser.add_argument
    add("--save_step", type=int, default=10, help="also keep a checkpoint every this many epochs")
    add("--n_epochs", type=int, default=200, help="total number of epochs, resumed ones included")
    add("--lr", type=float, default=0.0001, help="adam: learning rate")
    add("--b1", type=float, default=0.5, help="adam: decay of first order momentum of gradient")
    add("--b2", type=float, default=0.999, help="adam: decay of second order momentum of gradient")
    add("--lambda_sm", type=int, default=10, help="loss weight for soft margin")
    add("--hard_topk_ratio", type=float, default=1.0, help="hard negative ratio, epochs 0-20")
    add("--hard_decay1_topk_ratio", type=float, default=0.1, help="hard negative ratio, epochs 21-40")
    add("--hard_decay2_topk_ratio", type=float, default=0.05, help="hard negative ratio, epochs 41-60")
    add("--hard_decay3_topk_ratio", type=float, default=0.01, help="hard negative ratio, after epoch 60")
    add("--no_pretrained", action="store_true", help="train from scratch instead of ImageNet weights")
    add("--resume", default=None, metavar="RUN_DIR", help="continue the run in this folder from its last.ckpt")
    return parser


def build_datamodule(opt: argparse.Namespace) -> pl.LightningDataModule:
    sizes = {"sat_size": (opt.sat_size_h, opt.sat_size_w), "grd_size": (opt.grd_size_h, opt.grd_size_w)}
    loading = {"batch_size": opt.batch_size, "batch_size_val": opt.batch_size_val, "num_workers": opt.num_workers}
    if dataset_name(opt) == "CVACT":
        return CVACTDataModule(opt.data_root_cvact, mat_file=opt.mat_list, eval_split=opt.eval_split,
                               **sizes, **loading)
    return CVUSADataModule(opt.data_root_cvusa, train_csv=opt.train_csv, val_csv=opt.val_csv, **sizes, **loading)


def build_trainer(opt: argparse.Namespace, devices: Devices, **kwargs) -> pl.Trainer:
    """The Trainer both scripts use: devices from --gpu, precision, determinism, no sanity validation."""
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
        precision=opt.precision,
        deterministic=opt.deterministic,
        num_sanity_val_steps=0,
        **kwargs,
    )


def module_options(opt: argparse.Namespace) -> dict:
    return {
        "sat_size": (opt.sat_size_h, opt.sat_size_w),
        "grd_size": (opt.grd_size_h, opt.grd_size_w),
        "sa_num": opt.sa_num,
        "use_fc": not opt.no_fc,
        "channels_last": opt.channels_last,
        "compile_net": opt.compile,
    }


def main(argv: list[str] | None = None) -> int:
    opt = build_parser().parse_args(argv)
    name = dataset_name(opt)
    devices = parse_devices(opt.gpu_ids, opt.cpu_procs)
    if opt.resume:
        opt.checkpoint = str(Path(opt.resume) / "last.ckpt")
        if not Path(opt.checkpoint).is_file():
            raise UsageError(f"--resume {opt.resume}: no last.ckpt there; expected a run folder written by train.py")
    pl.seed_everything(opt.seed, workers=True, verbose=False)

    ckpt = read_checkpoint(opt.checkpoint) if opt.checkpoint else None
    published = ckpt is not None and PUBLISHED_MODEL_KEY in ckpt
    epoch_offset = int(ckpt.get("last_epoch", -1)) + 1 if published else 0
    module = CrossViewModule(
        **module_options(opt),
        pretrained=ckpt is None and not opt.no_pretrained,
        lr=opt.lr, b1=opt.b1, b2=opt.b2, lambda_sm=opt.lambda_sm,
        hard_topk_ratios=(opt.hard_topk_ratio, opt.hard_decay1_topk_ratio,
                          opt.hard_decay2_topk_ratio, opt.hard_decay3_topk_ratio),
        epoch_offset=epoch_offset,
    )
    if ckpt is not None:
        load_model_state(module.net, model_state(ckpt, opt.checkpoint), opt.checkpoint)
        if published:
            module.initial_optimizer_state = ckpt.get("optimizer_dict") or None
    if epoch_offset >= opt.n_epochs:
        raise UsageError(f"--n_epochs {opt.n_epochs}: the checkpoint already trained {epoch_offset} epochs")

    datamodule = build_datamodule(opt)
    datamodule.setup("fit")
    train_size = len(datamodule.train_dataset)
    if train_size < 2 or opt.batch_size > train_size:
        raise UsageError(f"--batch_size {opt.batch_size}: the training split has {train_size} pairs; hard-negative "
                         "mining needs a batch of at least 2 pairs, no larger than the split")

    resuming = ckpt is not None and not published
    continued_run = Path(opt.checkpoint).parent if resuming else None
    if continued_run is not None and (continued_run / "options.json").is_file():
        run_dir = continued_run
        os.environ[RUN_DIR_ENV] = str(run_dir)
    else:
        run_dir = make_run_dir(opt.results_dir, opt.name or default_run_name(f"{name}_train"))
    log = setup_logging(run_dir)
    if os.environ.get("LOCAL_RANK", "0") == "0":
        if run_dir != continued_run:
            write_json_atomically(run_dir / "options.json", vars(opt))
        log.info(describe_options(opt))
        log.info("%s: %s", "continuing run" if run_dir == continued_run else "run folder", run_dir)
        if published:
            log.info("continuing the published checkpoint %s at epoch %d (its best p2s R@1: %s)",
                     opt.checkpoint, epoch_offset, ckpt.get("best_acc"))

    best = ModelCheckpoint(dirpath=run_dir, filename="best", monitor=BEST_METRIC, mode="max", save_top_k=1,
                           enable_version_counter=False)
    last = ModelCheckpoint(dirpath=run_dir, filename="last", save_top_k=1, enable_version_counter=False)
    periodic = ModelCheckpoint(dirpath=run_dir, filename="epoch{epoch:03d}", every_n_epochs=opt.save_step,
                               save_top_k=-1, auto_insert_metric_name=False)
    trainer = build_trainer(
        opt, devices,
        max_epochs=opt.n_epochs - epoch_offset,
        callbacks=[best, last, periodic],
        logger=TensorBoardLogger(run_dir, name="tensorboard", version=""),
        default_root_dir=run_dir,
        limit_train_batches=42 if opt.debug else None,
        log_every_n_steps=10,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=opt.checkpoint if resuming else None)
    if trainer.is_global_zero:
        best_score = None if best.best_model_score is None else float(best.best_model_score)
        log.info("best %s: %s (%s)", BEST_METRIC, best_score, best.best_model_path)
        log.info("last checkpoint: %s", last.best_model_path)
        write_json_atomically(run_dir / "summary.json", {
            "best_checkpoint": best.best_model_path, "last_checkpoint": last.best_model_path,
            BEST_METRIC: best_score})
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")  # scaling on the device, by design
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")  # the run folder holds log.txt already
    run_main(main, KNOWN_ERRORS)
