"""Files written whole or not at all: readers never see half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` beside `path`, then rename it over `path`; a failed write leaves neither half a file nor
    the temporary one. The temporary name carries the process id, so two processes never share it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, data: dict) -> None:
    """`data` as indented JSON, written whole or not at all (`write_text_atomically`)."""
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")
