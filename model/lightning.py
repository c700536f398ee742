"""The LightningModule: wires the network, the loss and its hard-negative schedule, Adam and recall@K."""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.plugins.io import TorchCheckpointIO

from model.backbone import DEFAULT_BACKBONE
from model.loss import build_loss, gather_with_grad, hard_topk_ratio_for_epoch
from model.network import CrossViewNet
from model.schedule import lr_factor
from utils.checkpoint import CheckpointError, ModelConfig
from utils.evaluation import Evaluation, Matching, OwnPair, evaluate
from utils.images import to_model_range
from utils.recall import Shard

log = logging.getLogger("cvgl")
# Less free space than this after a failed checkpoint write means the disk was full.
CHECKPOINT_MARGIN_BYTES = 64 * 2**20


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; raised before the optimiser step can spoil the weights."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written beside their final name, then renamed: a kill mid-save leaves the old file whole.

    A write that fails leaves no partial file behind; one that fails for want of space says so in one line
    (torch reports a full disk as an error of its zip writer, not as ENOSPC).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except (OSError, RuntimeError) as exc:
            written = partial.stat().st_size if partial.exists() else 0
            partial.unlink(missing_ok=True)
            free = shutil.disk_usage(path.parent).free
            if getattr(exc, "errno", None) == errno.ENOSPC or free < CHECKPOINT_MARGIN_BYTES + written:
                raise CheckpointError(
                    f"no room to write {path}: {free / 2**20:.0f} MB free on its disk after {written / 2**20:.0f} MB "
                    "of it were written (removed); free space there, then continue with --resume"
                ) from None
            raise
        os.replace(partial, path)


def _rng_states() -> dict[str, Any]:
    """Every random state as tensors and plain numbers, which Lightning's weights-only loading accepts."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class CrossViewModule(pl.LightningModule):
    """Training, validation and test of `CrossViewNet`, with evaluation on the full gallery under DDP.

    `epoch_offset` counts epochs a published checkpoint already trained, so that the hard-negative
    schedule goes on where it stopped. `loss` names the loss (`model.loss.LOSSES`); which in-batch pairs are
    not negatives is the data module's rule (`not_negatives`, from `dataset.negatives`), applied to the labels
    it names. In-batch negatives are per device, as in the paper and the authors' DDP; `global_negatives`
    takes them from the batches of all devices instead. Evaluation follows the data module's protocol for the
    stage (`matching`, a `utils.evaluation.Matching`; one-to-one pairs without one), and its outcome is
    `evaluations[stage]`, an `Evaluation`. `grd_size` is the panoramas' size; with a limited
    field of view `fov` (degrees) the ground branch is sized for the slice the data module crops from them.
    """

    def __init__(
        self,
        sat_size: tuple[int, int] = (256, 256),
        grd_size: tuple[int, int] = (128, 512),
        sa_num: int = 8,
        use_fc: bool = True,
        pretrained: bool = True,
        lr: float = 1e-4,
        b1: float = 0.5,
        b2: float = 0.999,
        lambda_sm: float = 10.0,
        hard_topk_ratios: tuple[float, float, float, float] = (1.0, 0.1, 0.05, 0.01),
        epoch_offset: int = 0,
        channels_last: bool = False,
        compile_net: bool = False,
        global_negatives: bool = False,
        fov: float = 360.0,
        lr_schedule: str = "constant",
        lr_warmup: float = 0.0,
        backbone: str = DEFAULT_BACKBONE,
        loss: str = "triplet",
    ) -> None:
        super().__init__()
        lr_factor(0.0, lr_schedule, lr_warmup)  # checks the schedule's name now, not at the first step
        self.save_hyperparameters()
        self.net = CrossViewNet.from_config(self.model_config, pretrained)
        self.criterion = build_loss(loss, loss_weight=lambda_sm)
        self.not_negatives: Callable[[dict[str, torch.Tensor]], torch.Tensor | None] | None = None
        self.matching: dict[str, Matching] = {}
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile_net:
            self.net.compile()  # in place: the state dict keeps its keys, so checkpoints stay interchangeable
        self.initial_optimizer_state: dict[str, Any] | None = None
        self.evaluations: dict[str, Evaluation] = {}  # by stage ("val", "test"): the last one's
        self._eval_batches: dict[int, list[dict[str, torch.Tensor]]] = {}
        self._eval_batch_sizes: dict[int, int] = {}

    def setup(self, stage: str) -> None:
        """The data module's rules: which in-batch pairs are not negatives (without one, all are), and by which
        protocol validation and testing count a match (without one, one-to-one pairs)."""
        datamodule = self.trainer.datamodule
        self.not_negatives = getattr(datamodule, "not_negatives", None)
        self.matching = {split: datamodule.matching(split) if hasattr(datamodule, "matching") else OwnPair()
                         for split in ("val", "test")}

    @property
    def model_config(self) -> ModelConfig:
        hparams = self.hparams
        return ModelConfig(tuple(hparams.sat_size), tuple(hparams.grd_size), hparams.sa_num, hparams.use_fc,
                           hparams.fov, hparams.backbone)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Random states go with the weights, so a resumed run shuffles as the uninterrupted one would have."""
        checkpoint["rng_states"] = _rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            _restore_rng_states(checkpoint["rng_states"])

    @property
    def schedule_epoch(self) -> int:
        return self.current_epoch + self.hparams.epoch_offset

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """uint8 images travel to the device; scaling to [-1, 1] happens there, 4x less to copy."""
        memory_format = torch.channels_last if self.hparams.channels_last else torch.contiguous_format
        for key in ("sat", "grd"):
            if key in batch:
                batch[key] = to_model_range(batch[key]).contiguous(memory_format=memory_format)
        return batch

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam; `initial_optimizer_state` (a published checkpoint's) gives its moments, the flags its lr and betas."""
        betas = (self.hparams.b1, self.hparams.b2)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, betas=betas)
        if self.initial_optimizer_state:
            optimizer.load_state_dict(self.initial_optimizer_state)
            for group in optimizer.param_groups:  # load_state_dict brought the stored ones back
                group.update(lr=self.hparams.lr, betas=betas)
        loss_parameters = list(self.criterion.parameters())
        if loss_parameters:  # a learnable temperature: a group of its own
            optimizer.add_param_group({"params": loss_parameters})
        return optimizer

    def training_progress(self) -> float:
        """How far training is, from 0 to 1: by steps against the epochs' end, or by time against --max_time,
        whichever is further (training stops at whichever ends first). Under DDP every process takes the
        first one's, so that their clocks cannot give them different learning rates."""
        progress = 0.0
        total_steps = self.trainer.estimated_stepping_batches
        if math.isfinite(total_steps) and total_steps > 0:
            progress = self.trainer.global_step / total_steps
        for timer in self.trainer.callbacks:
            if isinstance(timer, Timer) and timer.time_remaining() is not None:
                elapsed = timer.time_elapsed()
                progress = max(progress, elapsed / max(elapsed + timer.time_remaining(), 1e-9))
        return min(self.trainer.strategy.broadcast(progress, src=0), 1.0)

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        if self.hparams.lr_schedule == "constant":
            return
        lr = self.hparams.lr * lr_factor(self.training_progress(), self.hparams.lr_schedule, self.hparams.lr_warmup)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = lr

    def on_train_epoch_start(self) -> None:
        if self.trainer.is_global_zero:
            log.info("epoch %d training: hard-negative ratio %g", self.schedule_epoch, self.hard_topk_ratio)

    @property
    def hard_topk_ratio(self) -> float:
        """The share of triplets the loss keeps in this epoch of the schedule."""
        return hard_topk_ratio_for_epoch(self.schedule_epoch, tuple(self.hparams.hard_topk_ratios))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        sat, grd = self.net(batch["sat"], batch["grd"])
        rule = self.not_negatives
        labels = {key: batch[key] for key in getattr(rule, "label_keys", ())}
        if self.hparams.global_negatives and self.trainer.world_size > 1:  # negatives from every device's batch
            sat, grd = gather_with_grad(sat), gather_with_grad(grd)
            labels = {key: gather_with_grad(value) for key, value in labels.items()}
        ratio = self.hard_topk_ratio
        loss = self.criterion(sat, grd, rule(labels) if rule is not None else None, ratio)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at epoch {self.schedule_epoch}, batch {batch_idx}; the weights were not "
                "updated and the last checkpoint holds the last good state (try a lower --lr or --precision 32)"
            )
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(sat))
        self.log("train/hard_topk_ratio", ratio, on_step=False, on_epoch=True, batch_size=len(sat))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._eval_batches = {}
        self._eval_batch_sizes = {}

    on_test_epoch_start = on_validation_epoch_start

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Embed what the batch holds, pairs or (a gallery of its own) queries from one loader and references
        from another, and keep the labels the stage's protocol reads."""
        kept = {"index": batch["index"]}
        if "sat" in batch:
            kept["sat"] = self._embed_alike(self.net.embed_sat, batch["sat"], dataloader_idx)
        if "grd" in batch:
            kept["grd"] = self._embed_alike(self.net.embed_grd, batch["grd"], dataloader_idx)
        matching = self.matching["test" if self.trainer.testing else "val"]
        kept.update({key: batch[key] for key in matching.label_keys if key in batch})
        self._eval_batches.setdefault(dataloader_idx, []).append(kept)

    test_step = validation_step

    def _embed_alike(self, embed: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     dataloader_idx: int) -> torch.Tensor:
        """Descriptors of a batch padded to the size of its loader's first batch, so that every batch has one shape.

        Convolution libraries choose their kernels by shape, and a smaller last batch rounds differently (about
        2e-8 here): padded, an image has the same descriptor wherever it falls, so duplicates tie exactly, and
        one process and several give the same figures.
        """
        count = len(images)
        size = self._eval_batch_sizes.setdefault(dataloader_idx, count)
        if count < size:
            images = torch.cat([images, images.new_zeros((size - count, *images.shape[1:]))])
        return embed(images)[:count].float()

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def on_test_epoch_end(self) -> None:
        self._score("test")

    def _gathered(self, batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Every process's outputs of one loader in dataset order, with the sampler's padding duplicates dropped."""
        local = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
        if self.trainer.world_size > 1:
            local = {key: self.all_gather(value).flatten(0, 1) for key, value in local.items()}
        index = local.pop("index").long()
        size = int(index.max()) + 1
        gathered = {}
        for key, value in local.items():
            ordered = value.new_empty((size, *value.shape[1:]))
            ordered[index] = value
            gathered[key] = ordered
        return gathered

    def _score(self, stage: str) -> None:
        """Evaluate by the stage's protocol: the first loader holds the queries, the last the references (the
        same loader for pairs)."""
        if not self._eval_batches:
            return
        loaders = [self._gathered(self._eval_batches[i]) for i in sorted(self._eval_batches)]
        self._eval_batches = {}
        shard = Shard.of_process_group() if self.trainer.world_size > 1 else None  # 1/world of the products each
        queries, references = loaders[0], loaders[-1]
        evaluation = evaluate(queries, references, self.matching[stage], shard)
        self.evaluations[stage] = evaluation
        results = evaluation.figures
        for key, value in _flat_figures(results).items():
            self.log(f"{stage}/{key}", value, sync_dist=True, prog_bar=key == "p2s_r@1")
        if stage == "val" and self.trainer.is_global_zero:
            num_queries, num_references = len(queries["grd"]), len(references["sat"])
            size = f"{num_queries} pairs" if references is queries else \
                f"{num_queries} queries against {num_references} references"
            line = "  ".join(f"{direction} " + " ".join(f"R@{name[2:]} {value:.2f}" for name, value in figures.items())
                             for direction, figures in results.items() if direction in ("p2s", "s2p"))
            if "hit_rate" in results:
                line += f"  hit rate {results['hit_rate']:.2f}"
            if "localization" in results:
                line += f"  median error {results['localization']['median_m']:.1f} m"
            log.info("epoch %d validation, %s: %s", self.schedule_epoch, size, line)


def _flat_figures(results: dict[str, Any]) -> dict[str, float]:
    """The figures to log: p2s_r@1 ..., s2p_r@1 ..., hit_rate, median_error_m, accuracy_10m."""
    figures = {f"{direction}_{name}": value for direction in ("p2s", "s2p") for name, value in
               results.get(direction, {}).items()}
    if "hit_rate" in results:
        figures["hit_rate"] = results["hit_rate"]
    if "localization" in results:
        figures["median_error_m"] = results["localization"]["median_m"]
        figures["accuracy_10m"] = results["localization"]["accuracy_10m"]
    return figures
