"""CVUSA with the 19zl split: aerial / ground-panorama pairs listed by the split CSVs."""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable
from typing import Any

import torch

from dataset.base import PanoramaDataset
from dataset.errors import DatasetError, check_files_exist
from utils.image_cache import image_source

TRAIN_CSV = "train-19zl.csv"
VAL_CSV = "val-19zl.csv"
SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EXAMPLE_LINE = "bingmap/19/0000001.jpg,streetview/panos/0000001.jpg,streetview/annotations/0000001.png"


class CVUSA(PanoramaDataset):
    """One split of CVUSA; a sample is {"sat", "grd": uint8 CHW RGB, "index": position in the split, "id"}.

    The id is the file name of a CSV line's first column. Images are read from the reorganised layout
    `root/sat/<id>.jpg`, `root/grd/<id>.png`; where neither `sat/` nor `grd/` exists the CSV's own paths are
    read under `root` (the raw download: `bingmap/19/<id>.jpg`, `streetview/panos/<id>.jpg`). `train_csv` and
    `val_csv` are file names in `root/splits/` (or absolute paths). Every file is checked on construction.
    With `cache_dir` the images are decoded once into memory-mapped arrays there (`utils.image_cache`).
    """

    name = "CVUSA"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        sat_size: tuple[int, int] = (256, 256),
        grd_size: tuple[int, int] = (128, 512),
        train_csv: str = TRAIN_CSV,
        val_csv: str = VAL_CSV,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"CVUSA split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.root = os.fspath(root)
        self.split = split
        self.sat_size = tuple(sat_size)
        self.grd_size = tuple(grd_size)
        self.transforms = transforms
        self.csv_path = os.path.join(self.root, "splits", train_csv if split == "train" else val_csv)
        self.ids: list[str] = []
        self.sat_paths: list[str] = []
        self.grd_paths: list[str] = []
        self.raw_layout = False
        self._verify()
        self.sat_images = image_source(self.sat_paths, self.sat_size, cache_dir, f"CVUSA-{split}-sat", self.root,
                                       f"aerial images of CVUSA {split}")
        self.grd_images = image_source(self.grd_paths, self.grd_size, cache_dir, f"CVUSA-{split}-grd", self.root,
                                       f"panoramas of CVUSA {split}")

    def _verify(self) -> None:
        """Read the split and check the root, the CSV and every image it names, before any training starts."""
        if not os.path.isdir(self.root):
            raise DatasetError(f"CVUSA root {self.root} is not a directory; {self._expected_layout()}")
        rows = read_split_csv(self.csv_path)
        self.ids = [pair_id for pair_id, _, _ in rows]
        self.raw_layout = not any(os.path.isdir(os.path.join(self.root, name)) for name in ("sat", "grd"))
        if self.raw_layout:
            self.sat_paths = [os.path.join(self.root, sat) for _, sat, _ in rows]
            self.grd_paths = [os.path.join(self.root, grd) for _, _, grd in rows]
        else:
            self.sat_paths = [os.path.join(self.root, "sat", f"{pair_id}.jpg") for pair_id in self.ids]
            self.grd_paths = [os.path.join(self.root, "grd", f"{pair_id}.png") for pair_id in self.ids]
        check_files_exist(self.sat_paths + self.grd_paths, f"images of {self.csv_path}", self._expected_layout())

    def _expected_layout(self) -> str:
        return (
            f"expected in {self.root}: splits/{os.path.basename(self.csv_path)}, sat/<id>.jpg and grd/<id>.png, "
            "or the raw download's paths as the CSV gives them (bingmap/19/<id>.jpg, streetview/panos/<id>.jpg)"
        )

    def _views(self, index: int) -> dict[str, torch.Tensor]:
        return {"sat": self.sat_images[index], "grd": self.grd_images[index]}


def read_split_csv(path: str) -> list[tuple[str, str, str]]:
    """(id, aerial path, panorama path) per line of a 19zl-style CSV; the id is the first column's file stem."""
    if not os.path.isfile(path):
        raise DatasetError(f"CVUSA split file {path} does not exist; expected lines like {EXAMPLE_LINE}")
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4096]:
        raise DatasetError(f"CVUSA split file {path} is UTF-16 text (what Windows PowerShell's '>' writes); save it "
                           "as UTF-8, for example with: iconv -f UTF-16 -t UTF-8 in.csv > out.csv")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"CVUSA split file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           f"expected lines like {EXAMPLE_LINE}") from None
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [field.strip() for field in line.split(",")]
        pair_id = os.path.splitext(os.path.basename(fields[0]))[0]
        if len(fields) < 2 or not pair_id or not fields[1]:
            raise DatasetError(
                f"{path} line {line_number}: expected 'aerial_path,panorama_path,annotation_path' "
                f"like {EXAMPLE_LINE}, got {line!r}"
            )
        if not fields[0].lower().endswith(IMAGE_SUFFIXES):
            what = "a header row, which 19zl split files do not have: remove it" if not rows else "no image path"
            raise DatasetError(f"{path} line {line_number}: {line[:80]!r} is {what}; expected lines like "
                               f"{EXAMPLE_LINE}")
        rows.append((pair_id, fields[0], fields[1]))
    if not rows:
        raise DatasetError(f"CVUSA split file {path} lists no image pairs; expected lines like {EXAMPLE_LINE}")
    return rows
