"""Plain helpers for the end-to-end tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Figures computed by the authors' code (tests/fixtures/README.md): part of the repository, so a clone tests itself.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_SIZES = ["--sat_size_h", "64", "--sat_size_w", "64", "--grd_size_h", "32", "--grd_size_w", "128"]
# A quarter of the pixels, for the tests whose figures do not matter, only that runs agree or stop right.
SMALL_SIZES = ["--sat_size_h", "32", "--sat_size_w", "32", "--grd_size_h", "16", "--grd_size_w", "64"]
# Put first on a subprocess's PYTHONPATH: its sitecustomize.py keeps the subprocess off the network.
OFFLINE_SITE = Path(__file__).resolve().parent / "offline_site"


def tiny_run_args(world: Path, results: Path, *extra: str, dataset: str = "CVUSA") -> list[str]:
    """Command-line arguments for a fast CPU run of train.py or test.py on the tiny world."""
    root_flag = "--data_root_cvusa" if dataset == "CVUSA" else "--data_root_cvact"
    return [f"--{dataset}", root_flag, str(world / dataset), *TINY_SIZES, "--gpu", "-1", "--num_workers", "0",
            "--batch_size", "8", "--batch_size_val", "5", "--results_dir", str(results), *extra]


def offline_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this one's, with the network guard and the repository importable."""
    path = os.pathsep.join([str(OFFLINE_SITE), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore", **extra}


def run_script(script: str, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one of the repository's scripts as a user would, in a subprocess working in `cwd` (a tmp_path)."""
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=offline_env(), cwd=cwd)


def run_entry_point(main: Callable[[list[str] | None], int], known_errors: tuple[type[BaseException], ...],
                    argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """An entry point's `__main__` path in this process: `run_main` over `argv`, returning the exit code."""
    from engine.exit import run_main

    monkeypatch.setattr(sys, "argv", ["entry_point.py", *argv])
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, known_errors)
    return exit_info.value.code
