"""A run stopped by a signal mid-epoch saves that step, says how to go on, and resumes to the uninterrupted weights.

Signals go to real training processes with the default loader settings, worker processes included.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import REPO_ROOT, SMALL_SIZES, offline_env, run_script, tiny_run_args
from utils.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)

EPOCHS = ("--n_epochs", "2", "--no_pretrained", "--batch_size", "4", *SMALL_SIZES)
CASES = {
    "CVUSA": ("--CVUSA", "--fov", "180", "--orientation_noise", "360"),  # turns drawn in the workers, too
    "VIGOR": ("--VIGOR",),
}


def default_loader_args(world, results, dataset: str, *extra: str) -> list[str]:
    """tiny_run_args without --num_workers: the loaders run as a user's would, with worker processes."""
    if dataset == "VIGOR":
        args = ["--VIGOR", "--data_root_vigor", str(world / "VIGOR"), "--gpu", "-1", "--batch_size_val", "7",
                "--results_dir", str(results)]
    else:
        args = tiny_run_args(world, results, dataset=dataset)
        at = args.index("--num_workers")
        del args[at:at + 2]
    return [*args, *extra]


@pytest.fixture(scope="module")
def uninterrupted(tiny_world, tmp_path_factory):
    """The last weights of an uninterrupted two-epoch run of each dataset."""
    results = tmp_path_factory.mktemp("whole")
    weights = {}
    for dataset, flags in CASES.items():
        args = default_loader_args(tiny_world, results, dataset, *EPOCHS, *flags[1:], "--name", dataset)
        whole = run_script("train.py", *args, cwd=results)
        assert whole.returncode == 0, whole.stderr[-2000:]
        weights[dataset] = read_checkpoint(results / dataset / "last.ckpt")
    return weights


def interrupt(args: list[str], cwd, signum: int, **env: str) -> subprocess.CompletedProcess:
    """Run train.py and send `signum` once it reports the second batch of its second epoch done."""
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=cwd,
                               env=offline_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    for line in process.stdout:
        if line.startswith("epoch 1 training: batch 2/") or time.monotonic() > deadline:
            process.send_signal(signum)
            break
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize(("dataset", "signum"), [("CVUSA", signal.SIGTERM), ("VIGOR", signal.SIGINT),
                                                 ("CVUSA", signal.SIGUSR1)])
def test_a_signal_mid_epoch_saves_the_step_and_resume_gives_the_uninterrupted_weights(tiny_world, tmp_path,
                                                                                       uninterrupted, dataset,
                                                                                       signum):
    run = tmp_path / "run"
    args = default_loader_args(tiny_world, tmp_path, dataset, *EPOCHS, *CASES[dataset][1:], "--name", "run")
    stopped = interrupt(args, tmp_path, signum)
    name = signal.Signals(signum).name
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    last = stopped.stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"interrupted by {name} at epoch 1, batch (\d+) of (\d+); continue with: "
                         rf"python train\.py --resume {re.escape(str(run))}", last)
    assert match and int(match[1]) < int(match[2]), last
    saved = read_checkpoint(run / "last.ckpt")
    assert saved["epoch"] == 1 and saved["global_step"] == int(match[2]) + int(match[1])  # that very step
    assert last in (run / "log.txt").read_text()

    resumed = run_script("train.py", "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, actual = uninterrupted[dataset], read_checkpoint(run / "last.ckpt")
    assert actual["global_step"] == expected["global_step"]
    for key, value in expected["state_dict"].items():
        assert torch.equal(actual["state_dict"][key], value), key


def test_a_requeued_slurm_job_continues_its_own_run_folder(tiny_world, tmp_path, uninterrupted):
    args = default_loader_args(tiny_world, tmp_path, "CVUSA", *EPOCHS, *CASES["CVUSA"][1:])  # no --name, as sbatch
    stopped = interrupt(args, tmp_path, signal.SIGTERM, SLURM_JOB_ID="4343")  # preempted
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    run = tmp_path / "CVUSA_train_job4343"
    assert stopped.stderr.strip().endswith(f"continue with: python train.py --resume {run}")

    requeued = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=tmp_path, text=True,
                              capture_output=True, env=offline_env(SLURM_JOB_ID="4343"), timeout=600)
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert f"SLURM job 4343 started again: continuing its run {run}" in (run / "log.txt").read_text()
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == [run.name]  # one folder
    expected, actual = uninterrupted["CVUSA"], read_checkpoint(run / "last.ckpt")
    for key, value in expected["state_dict"].items():
        assert torch.equal(actual["state_dict"][key], value), key
    assert not list(run.glob("hpc_ckpt_*"))
