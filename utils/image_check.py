"""Every image decodable and whole before the first training step, every bad one named at once.

libjpeg decodes a truncated JPEG with a grey lower part and only a warning that names no file, so a
decode alone passes it: a JPEG must also end with its end-of-image marker and a PNG with its IEND chunk.
Files are checked in threads (OpenCV decodes without the GIL). A file whose size and modification time
an earlier check recorded as good is not decoded again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_START = b"\x89PNG\r\n\x1a\n"


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


def _stamp(path: str) -> list[int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


def find_bad_images(paths: Sequence[str], workers: int, record: Path | None = None) -> list[tuple[str, str]]:
    """(path, problem) of every unusable image among `paths`, in their order.

    `record` (a JSON file) keeps the size and modification time of the images found good; those are skipped
    the next time, and the good ones of this check are added to it, atomically.
    """
    known = {}
    if record is not None and record.is_file():
        try:
            known = json.loads(record.read_text())
        except (OSError, ValueError):
            known = {}  # a damaged record only costs a full check
    unique = list(dict.fromkeys(os.path.abspath(path) for path in paths))
    stamps = {path: _stamp(path) for path in unique}
    to_check = [path for path in unique if stamps[path] is None or known.get(path) != stamps[path]]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = dict(zip(to_check, pool.map(image_problem, to_check), strict=True))
    if record is not None and to_check:
        known.update({path: stamps[path] for path, problem in problems.items() if problem is None and stamps[path]})
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(known))
        os.replace(partial, record)
    return [(path, problems[path]) for path in unique if problems.get(path)]
