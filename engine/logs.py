"""What a run says: the console for people, the run folder's log.txt for everything, Lightning's lines included."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


class _HeldForTheRunFolder(logging.Handler):
    """Keeps the messages logged before the run folder exists (the data check's, the cache's)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# Loggers whose messages go to log.txt: ours, Lightning's (device lines, tips, the model summary) and Python's
# warnings. Only ours reaches the console, and of ours not what is logged with extra=FILE_ONLY.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric")
RUN_LOGGERS = ("cvgl", *LIGHTNING_LOGGERS, "py.warnings")
FILE_ONLY = {"file_only": True}


def _console(verbose: bool) -> logging.Handler:
    """Standard output for this project's messages; with `verbose` (--debug) the file-only ones too."""
    console = logging.StreamHandler(sys.stdout)
    if not verbose:
        console.addFilter(lambda record: not getattr(record, "file_only", False))
    return console


def start_logging(verbose: bool = False) -> logging.Logger:
    """Messages to the console from the start of a run, kept until `setup_logging` writes them to log.txt too.

    Quiet unless `verbose` (--debug): the console gets the run folder, the epochs, the figures and the errors;
    Lightning's lines and Python's warnings are kept for log.txt only.
    """
    if not verbose:
        logging.captureWarnings(True)
        for lightning in map(logging.getLogger, LIGHTNING_LOGGERS):
            for handler in [h for h in lightning.handlers if not getattr(h, "_cvgl", False)]:
                lightning.removeHandler(handler)  # Lightning's own console handler
    held = {name: [_HeldForTheRunFolder()] for name in RUN_LOGGERS}
    return _install({**held, "cvgl": [_console(verbose), *held["cvgl"]]})


def setup_logging(run_dir: Path, verbose: bool = False) -> logging.Logger:
    """Messages to `run_dir/log.txt`, Lightning's and the warnings included, and ours to the console too;
    log.txt begins with what was logged since `start_logging`.

    Replaces the handlers of an earlier call, so a second run in the same process logs only to its own folder.
    """
    file_handler = logging.FileHandler(run_dir / "log.txt")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    held = sorted((record for name in RUN_LOGGERS for handler in logging.getLogger(name).handlers
                   if isinstance(handler, _HeldForTheRunFolder) for record in handler.records),
                  key=lambda record: record.created)
    log = _install({name: [file_handler] for name in RUN_LOGGERS} | {"cvgl": [file_handler, _console(verbose)]})
    for record in held:
        file_handler.handle(record)
    return log


def _install(handlers_of: dict[str, list[logging.Handler]]) -> logging.Logger:
    for name, handlers in handlers_of.items():
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_cvgl", False)]:
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            handler._cvgl = True
            logger.addHandler(handler)
    for name in ("cvgl", "py.warnings"):
        logging.getLogger(name).propagate = False
    log = logging.getLogger("cvgl")
    log.setLevel(logging.INFO)
    return log
