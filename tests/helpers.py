"""Plain helpers for the end-to-end tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SIZES = ["--sat_size_h", "64", "--sat_size_w", "64", "--grd_size_h", "32", "--grd_size_w", "128"]


def tiny_run_args(world: Path, results: Path, *extra: str, dataset: str = "CVUSA") -> list[str]:
    """Command-line arguments for a fast CPU run of train.py or test.py on the tiny world."""
    root_flag = "--data_root_cvusa" if dataset == "CVUSA" else "--data_root_cvact"
    return [f"--{dataset}", root_flag, str(world / dataset), *TINY_SIZES, "--gpu", "-1", "--num_workers", "0",
            "--batch_size", "8", "--batch_size_val", "5", "--results_dir", str(results), *extra]


def run_script(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one of the repository's scripts as a user would, in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO_ROOT)
