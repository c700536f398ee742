"""Every image decodable and whole before the first training step, every bad one named at once.

libjpeg decodes a truncated JPEG with a grey lower part and only a warning that names no file, so a
decode alone passes it: a JPEG must also end with its end-of-image marker and a PNG with its IEND chunk.
Files are checked in threads (OpenCV decodes without the GIL). The size and modification time of the
images found good are kept in a record in the user's cache folder (`record_path`), one file per dataset
folder, so that the next run, or the next `localize.py` pass, decodes only what is new or changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from utils.files import write_text_atomically

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_START = b"\x89PNG\r\n\x1a\n"
RECORD_DIR_ENV = "CVGL_CHECKED_IMAGES_DIR"

Stamp = tuple[int, int]  # (size in bytes, modification time in ns)


def image_problem(path: str) -> str | None:
    """Why the image file at `path` cannot be used, or None when it decodes whole."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not data:
        return "empty (0 bytes)"
    if data.startswith(JPEG_START) and JPEG_END not in data[-1024:]:
        return "truncated: the JPEG has no end-of-image marker"
    if data.startswith(PNG_START) and b"IEND" not in data[-32:]:
        return "truncated: the PNG has no IEND chunk"
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        return "not a decodable image"
    return None


def record_path(paths: Sequence[str]) -> Path:
    """Where the good images among `paths` are recorded: `$CVGL_CHECKED_IMAGES_DIR`, else
    `$XDG_CACHE_HOME/cvgl/checked-images` (`~/.cache/...`), in a file named after the folder that holds them all."""
    folder = os.environ.get(RECORD_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cvgl", "checked-images")
    common = os.path.commonpath([os.path.abspath(path) for path in paths]) if paths else ""
    digest = hashlib.sha1(common.encode()).hexdigest()[:12]
    return Path(folder) / f"{Path(common).name or 'root'}-{digest}.json"


def read_record(path: Path) -> dict[str, Stamp]:
    """The stamps of the images a previous check found good; a missing or damaged record is an empty one."""
    try:
        return {name: tuple(stamp) for name, stamp in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def write_record(path: Path, good: dict[str, Stamp]) -> bool:
    """Add `good` to the record at `path`, atomically; False when it cannot be written (the check still holds)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(read_record(path) | good))
    except OSError:
        return False
    return True


def _stamp(path: str) -> Stamp | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def find_bad_images(paths: Sequence[str], workers: int, known: dict[str, Stamp] | None = None
                    ) -> tuple[list[tuple[str, str]], dict[str, Stamp]]:
    """(path, problem) of every unusable image among `paths`, in their order, and the stamps of those found good.

    An image whose absolute path `known` lists with its current size and modification time is not decoded.
    """
    known = known or {}
    unique = list(dict.fromkeys(os.path.abspath(path) for path in paths))
    stamps = {path: _stamp(path) for path in unique}
    to_check = [path for path in unique if stamps[path] is None or known.get(path) != stamps[path]]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = dict(zip(to_check, pool.map(image_problem, to_check), strict=True))
    good = {path: stamps[path] for path, problem in problems.items() if problem is None and stamps[path]}
    return [(path, problems[path]) for path in unique if problems.get(path)], good
