"""How an entry point ends: a user's mistake in one line with exit code 2, a signal with 128 + its number, and
in a job of several processes without waiting on peers that are gone."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from engine.devices import is_first_process


class Interrupted(Exception):
    """Training stopped on a signal after saving where it stood; the job exits with 128 + the signal's number,
    as a shell reports a process ended by that signal, so `train.py && test.py` and schedulers see no success."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


# How a collective fails when another process of the job died: gloo's broken connection, NCCL's backend error.
PEER_FAILURES = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing")


def run_main(main: Callable[[list[str] | None], int], known_errors: tuple[type[BaseException], ...]) -> None:
    """Run `main`; a user's mistake prints one line and exits 2, with the traceback only under --debug.

    In a job of several processes, the process that meets the mistake prints its line and leaves at once,
    so that the others are not kept waiting in a collective; they see their connection break and leave
    with the same code and nothing to print, so the job ends with one line. A mistake met before the
    processes joined (a flag, a checkpoint, the data's layout) is met by all of them: rank 0 prints it.
    """
    try:
        sys.exit(main(None))
    except Interrupted as exc:
        if is_first_process():
            print(exc, file=sys.stderr)
        _leave(exc.exit_code)
    except known_errors as exc:
        if "--debug" in sys.argv:
            traceback.print_exc()
        if is_first_process() or _joined_the_job():  # before joining, every process meets the same mistake
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            _to_run_log(f"error: {_one_line(exc)}")
        _leave(2)
    except Exception as exc:
        if not (_in_distributed_job() and _a_peer_failed(exc)) or "--debug" in sys.argv:
            raise
        _leave(2)


def _to_run_log(message: str) -> None:
    """The line into the run folder's log.txt too, where one was set up (the console has it already)."""
    record = logging.LogRecord("cvgl", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger("cvgl").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _joined_the_job() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _in_distributed_job() -> bool:
    return _joined_the_job() or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _a_peer_failed(exc: BaseException) -> bool:
    import torch.distributed as dist

    return isinstance(exc, dist.DistBackendError) or any(failure in str(exc) for failure in PEER_FAILURES)


def _leave(code: int) -> None:
    """sys.exit, except in a distributed job: there teardown could wait on the collectives of dead peers."""
    if not _in_distributed_job():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _one_line(exc: BaseException) -> str:
    """The error's own message, also when a DataLoader worker wrapped it in the worker's traceback."""
    message = str(exc).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message
