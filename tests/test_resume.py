"""A run killed mid-epoch and resumed ends exactly where the uninterrupted run ends."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import REPO_ROOT, SMALL_SIZES, offline_env, run_script, tiny_run_args
from utils.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)

EPOCHS = ("--n_epochs", "3", "--no_pretrained", "--batch_size", "4", *SMALL_SIZES)


def last_epoch_saved(run):
    try:
        return read_checkpoint(run / "last.ckpt")["epoch"]
    except Exception:  # not written yet
        return None


def test_sigkill_during_an_epoch_then_resume_gives_the_uninterrupted_weights(tiny_world, tmp_path):
    whole = run_script("train.py", *tiny_run_args(tiny_world, tmp_path, *EPOCHS, "--name", "whole"), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]

    command = [sys.executable, str(REPO_ROOT / "train.py"), *tiny_run_args(tiny_world, tmp_path, *EPOCHS,
                                                                           "--name", "killed")]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=offline_env())
    run = tmp_path / "killed"
    deadline = time.monotonic() + 600
    while last_epoch_saved(run) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved_epoch = last_epoch_saved(run)
    assert saved_epoch is not None and saved_epoch < 2

    resumed = run_script("train.py", "--resume", str(run), cwd=tmp_path)  # the run's options need no repeating
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = read_checkpoint(tmp_path / "whole" / "last.ckpt")
    actual = read_checkpoint(run / "last.ckpt")
    assert actual["epoch"] == expected["epoch"] == 2
    for key, value in expected["state_dict"].items():
        assert torch.equal(actual["state_dict"][key], value), key


SAVE_FOREVER = """
import sys
import torch
from model.lightning import AtomicCheckpointIO
writer, checkpoint = AtomicCheckpointIO(), {"epoch": 0, "weights": torch.randn(20_000_000)}
while True:
    writer.save_checkpoint(checkpoint, sys.argv[1])
    print(checkpoint["epoch"], flush=True)
    checkpoint["epoch"] += 1
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_readable(tmp_path):
    path = tmp_path / "last.ckpt"
    process = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(path)], cwd=tmp_path,
                               stdout=subprocess.PIPE, text=True, env=offline_env())
    assert process.stdout.readline().strip() == "0"
    time.sleep(0.15)  # well inside the next 80 MB save
    process.kill()
    process.wait()
    printed = process.stdout.read().split()
    last_printed = int(printed[-1]) if printed else 0
    # the last save it reported, or the one after it when the kill fell between its rename and its print
    assert read_checkpoint(path)["epoch"] in (last_printed, last_printed + 1)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".last.ckpt.partial"] == ["last.ckpt"]
