"""Runs started by a cluster launcher (torchrun, srun): one run folder for the whole job.

Lightning's own launcher (`--gpu 0,1`, `--cpu_procs N`) starts the other processes itself and hands them
the folder in the environment. torchrun and srun start every process alike, so rank 0 chooses the folder
and sends its name to the others over the job's process group, which is opened here early; Lightning
finds it open and uses it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment, TorchElasticEnvironment
from lightning_fabric.utilities.distributed import _init_dist_connection

from engine.devices import Devices
from engine.run_folder import RUN_DIR_ENV


def external_launcher() -> ClusterEnvironment | None:
    """The environment of torchrun or srun when one of them started this process, as Lightning detects it."""
    for environment in (TorchElasticEnvironment, SLURMEnvironment):
        if environment.detect():
            return environment()
    return None


def job_run_dir(make_run_dir: Callable[[], Path], devices: Devices) -> Path:
    """`make_run_dir()` on rank 0 of the job; every other process of the job gets the same folder."""
    environment = external_launcher()
    if environment is None or environment.world_size() == 1:
        return make_run_dir()
    if devices.accelerator == "gpu":  # NCCL sends the folder's name from each process's own GPU
        torch.cuda.set_device(devices.devices[environment.local_rank()])
    _init_dist_connection(environment, "nccl" if devices.accelerator == "gpu" else "gloo")
    name = [str(make_run_dir()) if environment.global_rank() == 0 else None]
    dist.broadcast_object_list(name, src=0)
    os.environ[RUN_DIR_ENV] = name[0]
    return Path(name[0])
