"""Continuing a run: its options come from its checkpoint, and only what may change can be given again."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dataset.datamodule import DATAMODULES
from engine.options import NO_EFFECT, TESTING_ONLY, UsageError, flag_text, with_options

OPTIONS_KEY = "options"  # this project's checkpoints carry the run's options under this key
OPTIONS_FILE = "options.json"
# What a continued run may be given anew: how long, where the data lies now, and on what it runs.
MAY_CHANGE = ("n_epochs", "max_time", "num_workers", "cache_dir", *(m.root_option for m in DATAMODULES.values()),
              "gpu_ids", "cpu_procs", "num_nodes", "precision", "deterministic", "channels_last", "compile", "debug")
# What describes this call rather than the run: never taken from the stored options, never a contradiction.
ABOUT_THIS_CALL = ("resume", "checkpoint", "test", "results_dir", "name", *NO_EFFECT, *TESTING_ONLY)


def stored_options(ckpt: Mapping[str, Any], checkpoint: str | Path) -> dict[str, Any] | None:
    """The options of the run a checkpoint belongs to: carried inside it, else the options.json beside it."""
    if isinstance(ckpt.get(OPTIONS_KEY), Mapping):
        return dict(ckpt[OPTIONS_KEY])
    beside = Path(checkpoint).parent / OPTIONS_FILE
    if beside.is_file():
        try:
            return json.loads(beside.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{beside}: cannot be read as the run's options ({exc})") from None
    return None


def continue_options(opt: argparse.Namespace, given: set[str], stored: Mapping[str, Any],
                     source: str) -> tuple[argparse.Namespace, list[str]]:
    """The options with the run's stored ones for everything the command line left out, and the flags it changed.

    A given flag that differs from the run's value is refused in one line naming both values, unless it is
    one of MAY_CHANGE.
    """
    taken, changed = {}, []
    for name, value in stored.items():
        if name in ABOUT_THIS_CALL or not hasattr(opt, name):
            continue
        if name not in given:
            taken[name] = value
            continue
        new = getattr(opt, name)
        if new == value:
            continue
        if name not in MAY_CHANGE:
            raise UsageError(
                f"{flag_text(name, new)}: the run of {source} was configured with {flag_text(name, value)}; a "
                "continued run keeps its options, only --n_epochs, --max_time, --num_workers, --cache_dir, the data "
                "roots and the device flags may change"
            )
        changed.append(f"{flag_text(name, new)} (was {flag_text(name, value)})")
    return with_options(opt, **taken), changed
