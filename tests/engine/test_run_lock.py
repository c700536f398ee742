"""A run folder is held by one job at a time; a killed job's hold ends with it."""

import shutil
import signal
import subprocess
import sys

import pytest

from engine.options import UsageError
from engine.run_lock import hold_run_folder
from tests.helpers import offline_env, run_script

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)

HOLD = """
import sys, time
from engine.run_lock import hold_run_folder
hold_run_folder(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def holder(run_dir) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                               env=offline_env())
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_job_on_a_held_run_folder_gets_one_line_and_a_killed_holder_blocks_nothing(tiny_trained_run,
                                                                                          tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run)
    options_before = (run / "options.json").read_bytes()
    log_before = (run / "log.txt").read_bytes()
    process = holder(run)
    try:
        resumed = run_script("train.py", "--resume", str(run), "--n_epochs", "3", cwd=tmp_path)
        assert resumed.returncode == 2
        lines = resumed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: run folder {run} is in use by process {process.pid} ")
        with pytest.raises(UsageError, match=f"in use by process {process.pid} on "):
            hold_run_folder(run)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (run / "options.json").read_bytes() == options_before and (run / "log.txt").read_bytes() == log_before
    hold_run_folder(run)  # the killed job's lock went with it
    hold_run_folder(run)  # and a process may take a folder it holds again
