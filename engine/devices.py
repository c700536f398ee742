"""Which devices a call runs on, and which process of a job this is."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from engine.options import UsageError


@dataclass(frozen=True)
class Devices:
    accelerator: str
    devices: list[int] | int
    strategy: str

    @property
    def count(self) -> int:
        return len(self.devices) if isinstance(self.devices, list) else self.devices


def parse_devices(gpu_ids: str, cpu_procs: int = 1, cuda_count: int | None = None, num_nodes: int = 1) -> Devices:
    """`--gpu 0,1` -> those two GPUs with DDP; `--gpu 1` -> GPU number 1; `--gpu -1` -> the CPU.

    The devices are each node's; DDP as soon as the job has more than one process. Without CUDA, GPU ids
    fall back to the CPU with a warning so the scripts run on a laptop.
    """
    try:
        ids = [int(part) for part in gpu_ids.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--gpu {gpu_ids}: expected comma-separated GPU numbers such as 0 or 0,1, or -1") from None
    if cpu_procs < 1:
        raise UsageError(f"--cpu_procs {cpu_procs}: expected 1 or more processes")
    if num_nodes < 1:
        raise UsageError(f"--num_nodes {num_nodes}: expected 1 or more machines")
    gpus = [i for i in ids if i >= 0]
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus and cuda_count == 0:
        print(f"warning: --gpu {gpu_ids}: CUDA is not available, running on the CPU", file=sys.stderr)
        gpus = []
    absent = [i for i in gpus if i >= cuda_count]
    if absent:
        raise UsageError(f"--gpu {gpu_ids}: GPU {absent[0]} does not exist; this machine has GPUs 0-{cuda_count - 1}")
    if gpus:
        return Devices("gpu", gpus, "ddp" if len(gpus) * num_nodes > 1 else "auto")
    return Devices("cpu", cpu_procs, "ddp" if cpu_procs * num_nodes > 1 else "auto")


def is_first_process() -> bool:
    """Whether this is rank 0 of the job, by what torchrun, srun or Lightning's own launcher put in the environment."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return os.environ[name] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
