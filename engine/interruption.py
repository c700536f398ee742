"""Training that stops cleanly when its job is told to: SIGTERM (schedulers), SIGINT (Ctrl-C) and SIGUSR1
(SLURM's `--signal`, sent before a time limit).

The signal only raises a flag. At the end of the next training step, every process of the job agrees to stop
(one all-reduce of the flag), `last.ckpt` is written for that step, mid-epoch, and the run ends with one line
saying how to continue and exit code 128 + the signal's number. `--resume` then continues the epoch at the
next batch, with the batches an uninterrupted run would have had (`dataset.sampler`). A step that ends an
epoch is followed by the epoch's validation and checkpoint anyway, so the stop waits for the next step. Under
SLURM, SIGUSR1 also requeues the job, which then continues its own run folder (`train.py`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from engine.exit import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
log = logging.getLogger("cvgl")


def slurm_job_id() -> str | None:
    """This SLURM job's id (an array task's as JOB_TASK), or None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") or None


class StopOnSignal(Callback):
    """Stops training at the next step after a stop signal, with `run_dir/last.ckpt` written for that step."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.received: int | None = None

    def _receive(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:  # a second signal changes nothing: the step's checkpoint is written once
            self.received = signum
            os.write(2, f"received {signal.Signals(signum).name}: stopping after this training step\n".encode())

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Replaces Lightning's handlers (registered just before), which would end the run without a checkpoint."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._receive)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch's validation and checkpoint come next; the stop waits for the next step
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        signum = self.received or signal.SIGTERM  # a process of the job that got no signal stops with the others
        trainer.save_checkpoint(self.run_dir / "last.ckpt")
        epoch = getattr(pl_module, "schedule_epoch", trainer.current_epoch)
        where = f"epoch {epoch}, batch {batch_idx + 1} of {trainer.num_training_batches}"
        message = (f"interrupted by {signal.Signals(signum).name} at {where}; continue with: "
                   f"python train.py --resume {self.run_dir}")
        if signum == signal.SIGUSR1 and trainer.is_global_zero and slurm_job_id() is not None:
            message += self._requeue(slurm_job_id())
        if trainer.is_global_zero:
            log.info("%s (last.ckpt holds step %d)", message, trainer.global_step)
        raise Interrupted(message, signum)

    @staticmethod
    def _requeue(job_id: str) -> str:
        """Put the SLURM job back in the queue; it runs the same command line, which continues this run folder."""
        try:
            result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f" (requeueing SLURM job {job_id} failed: {exc})"
        if result.returncode != 0:
            return f" (requeueing SLURM job {job_id} failed: {result.stderr.strip() or result.returncode})"
        return f"; SLURM job {job_id} requeued, it continues this run when it starts again"
