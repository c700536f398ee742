"""One folder per run under --results_dir, never reused, shared by the processes of a job."""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.options import UsageError

RUN_DIR_ENV = "CVGL_RUN_DIR"


def make_run_dir(results_dir: str, name: str) -> Path:
    """A new folder for this run; an existing name gets a numbered suffix instead of being reused.

    DDP re-launches this script once per extra process; those processes find the folder in the
    environment instead of making their own.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0" and RUN_DIR_ENV in os.environ:
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(results_dir) / name
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--results_dir {results_dir}: cannot create it ({exc.strerror})") from None
    for attempt in range(10_000):
        run_dir = base if attempt == 0 else base.with_name(f"{base.name}_{attempt}")
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"--results_dir {results_dir}: cannot write there ({exc.strerror})") from None
    if not os.access(run_dir, os.W_OK):
        raise UsageError(f"--results_dir {results_dir}: folder {run_dir} is not writable")
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def default_run_name(prefix: str) -> str:
    return f"{prefix}_{time.strftime('%Y%m%d-%H%M%S')}"
