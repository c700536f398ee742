"""One job at a time in a run folder: a requeued job and a manual `--resume` must not train over each other.

The first process of a job holds an exclusive `flock` on `RUN_DIR/.lock` until it exits. The operating system
drops the lock with the process, however it ends, so a killed job never blocks the next one; the file only
names the holder, for the message the second job prints.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from engine.options import UsageError

LOCK_FILE = ".lock"
_held: dict[Path, IO[str]] = {}  # open for the life of the process: closing a file would drop its lock


def hold_run_folder(run_dir: Path) -> None:
    """Take `run_dir` for this process (again, if it holds it already), or raise UsageError naming its holder."""
    path = (Path(run_dir) / LOCK_FILE).resolve()
    if path in _held:
        return
    handle = open(path, "a+")  # kept open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UsageError(f"run folder {run_dir} is in use by {holder}; wait for that job to end or stop it, "
                         "then run this again") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _held[path] = handle
