"""The error a dataset raises when the data on disk is not what it expects, and the file check behind it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

MAX_NAMED_PATHS = 5


class DatasetError(ValueError):
    """Root, split file, index file or image missing or malformed; raised before any training starts."""


def find_missing(paths: Iterable[str]) -> list[str]:
    """The paths that are not files, in order.

    Lists each directory once (os.scandir) instead of one stat per file, so checking the tens of thousands
    of images of CVUSA or CVACT stays fast even on a network file system.
    """
    listings: dict[str, set[str]] = {}
    missing = []
    for path in paths:
        directory, name = os.path.split(path)
        names = listings.get(directory)
        if names is None:
            names = listings[directory] = _list_directory(directory)
        # a name absent from the listing may still exist on a case-insensitive file system
        if name not in names and not os.path.isfile(path):
            missing.append(path)
    return missing


def _list_directory(directory: str) -> set[str]:
    try:
        with os.scandir(directory or ".") as entries:
            return {entry.name for entry in entries}
    except OSError:
        return set()


def name_paths(paths: Sequence[str], limit: int = MAX_NAMED_PATHS) -> str:
    """The first `limit` paths, comma-separated, plus "and N more"."""
    named = ", ".join(paths[:limit])
    return f"{named} and {len(paths) - limit} more" if len(paths) > limit else named


def check_files_exist(paths: Sequence[str], what: str, layout: str) -> None:
    """Raise a DatasetError naming the first missing paths of `what` and the layout expected."""
    missing = find_missing(paths)
    if missing:
        raise DatasetError(f"{len(missing)} of {len(paths)} {what} are missing: {name_paths(missing)}; {layout}")
