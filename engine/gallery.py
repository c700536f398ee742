"""The aerial images `localize.py` searches: a folder of files, a CVACT index file, or tiles cut from an orthophoto.

A gallery gives its size, an id and a position for each image, the images themselves in batches (for the
descriptors) or a few at a time (for the figure), and what it depends on (`describe`), so that an index built
from it knows when it is stale. Positions are (latitude, longitude) in degrees (`position_kind` "latlon"),
or CVACT's UTM (easting, northing) in metres ("utm"), or unknown (None).

Where a folder's positions come from: VIGOR's names (`satellite_<lat>_<lon>.png`) give them; for any other
naming, `--positions CSV` lists `name,latitude,longitude` (a header line, then one image a line, the name
with or without its extension).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dataset.cvact import read_act_data
from dataset.errors import check_files_exist
from engine.options import UsageError
from utils.image_cache import DecodedImages
from utils.images import read_rgb
from utils.orthophoto import TileGrid, open_metric, plan_tiles, read_tiles, read_tiles_from

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MAT_SPLITS = ("all", "train", "val", "test")
VIGOR_NAME = re.compile(r"^satellite_(-?\d+(?:\.\d+)?)_(-?\d+(?:\.\d+)?)$")


def file_stamps(paths: Sequence[str]) -> np.ndarray:
    """(size, mtime_ns) of each file as int64, (N, 2); a file overwritten in place changes its mtime."""
    stats = [os.stat(path) for path in paths]
    return np.array([(stat.st_size, stat.st_mtime_ns) for stat in stats], dtype=np.int64).reshape(-1, 2)


@dataclass
class FileGallery:
    """Aerial images in files: ids, paths, (N, 2) positions or None, and where they were listed from.

    `stamps` (N, 2) holds each file's size and modification time in nanoseconds, read from the files when not
    given; `skipped` the images left out as unusable (`--skip_bad_images`).
    """

    ids: list[str]
    paths: list[str]
    positions: np.ndarray | None
    source: str
    stamps: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    position_kind: str | None = None

    def __post_init__(self) -> None:
        if self.stamps is None:
            self.stamps = file_stamps(self.paths)
        if self.position_kind is None and self.positions is not None:
            self.position_kind = "latlon"

    def __len__(self) -> int:
        return len(self.paths)

    def id(self, row: int) -> str:
        return self.ids[row]

    def without(self, paths: Sequence[str]) -> FileGallery:
        """This gallery less the images at `paths`, which it remembers as skipped."""
        dropped = set(paths)
        kept = [number for number, path in enumerate(self.paths) if path not in dropped]
        return FileGallery([self.ids[k] for k in kept], [self.paths[k] for k in kept],
                           None if self.positions is None else self.positions[kept], self.source, self.stamps[kept],
                           sorted(dropped | set(self.skipped)), self.position_kind)

    def batches(self, size_hw: tuple[int, int], batch_size: int, workers: int,
                start: int = 0) -> Iterator[torch.Tensor]:
        """uint8 (B, 3, H, W) batches of the images from row `start` on, in order."""
        loader = DataLoader(DecodedImages(self.paths[start:], size_hw), batch_size=batch_size, num_workers=workers)
        yield from loader

    def images(self, rows: Sequence[int], size_hw: tuple[int, int]) -> list[np.ndarray]:
        return [read_rgb(self.paths[row], size_hw) for row in rows]

    def footprints(self, rows: Sequence[int]) -> np.ndarray | None:
        """Corners (len(rows), 4, 2) in latitude and longitude; unknown for files."""
        return None

    def describe(self) -> dict:
        digest = hashlib.sha256()
        for path, stamp in zip(self.paths, self.stamps, strict=True):
            digest.update(f"{path}\0{stamp[0]}\0{stamp[1]}\n".encode())
        return {"source": self.source, "images": len(self.paths), "files": digest.hexdigest()}

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"ids": np.asarray(self.ids, dtype=str), "paths": np.asarray(self.paths, dtype=str),
                  "stamps": self.stamps, "skipped": np.asarray(self.skipped, dtype=str)}
        if self.positions is not None:
            arrays["positions"] = self.positions
        return arrays

    @classmethod
    def from_arrays(cls, arrays, source: str, position_kind: str | None) -> FileGallery:
        positions = arrays["positions"] if "positions" in arrays else None
        return cls([str(i) for i in arrays["ids"]], [str(p) for p in arrays["paths"]], positions, source,
                   arrays["stamps"], [str(p) for p in arrays["skipped"]], position_kind)


class _TileStrips(Dataset):
    """Batches of an orthophoto's tiles, each read as one strip per grid row; the raster is opened once in each
    process that reads (DataLoader workers included) and never pickled."""

    def __init__(self, grid: TileGrid, size_hw: tuple[int, int], starts: Sequence[int], batch_size: int) -> None:
        self.grid, self.size_hw, self.starts, self.batch_size = grid, size_hw, list(starts), batch_size
        self._raster = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, item: int) -> torch.Tensor:
        if self._raster is None:
            self._context = open_metric(self.grid.path)
            self._raster = self._context.__enter__()
        start = self.starts[item]
        rows = np.arange(start, min(start + self.batch_size, len(self.grid)))
        tiles = read_tiles_from(self._raster, self.grid, rows, self.size_hw)
        return torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_raster": None, "_context": None}


@dataclass
class TileGallery:
    """The tiles of an orthophoto (`utils.orthophoto.TileGrid`), ids `r<row>_c<col>` of their top-left pixel."""

    grid: TileGrid
    position_kind: str = "latlon"
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.source = os.path.abspath(self.grid.path)
        self.positions = self.grid.centres_latlon()

    def __len__(self) -> int:
        return len(self.grid)

    def id(self, row: int) -> str:
        top, left = self.grid.origins[row]
        return f"r{top}_c{left}"

    def batches(self, size_hw: tuple[int, int], batch_size: int, workers: int,
                start: int = 0) -> Iterator[torch.Tensor]:
        strips = _TileStrips(self.grid, size_hw, range(start, len(self.grid), batch_size), batch_size)
        yield from DataLoader(strips, batch_size=None, num_workers=workers)

    def images(self, rows: Sequence[int], size_hw: tuple[int, int]) -> list[np.ndarray]:
        return list(read_tiles(self.grid, np.asarray(rows), size_hw))

    def footprints(self, rows: Sequence[int]) -> np.ndarray:
        return self.grid.corners_latlon(np.asarray(rows))

    def arrays(self) -> dict[str, np.ndarray]:
        return self.grid.to_arrays()

    @classmethod
    def from_arrays(cls, arrays, source: str, position_kind: str | None) -> TileGallery:
        return cls(TileGrid.from_arrays(arrays))


@dataclass(frozen=True)
class OrthophotoRequest:
    """Tiles asked of an orthophoto; cut (`plan`) only when an index has to be built, since cutting reads the
    whole raster's data mask."""

    path: str
    tile_m: float
    stride_m: float
    max_nodata: float

    @property
    def source(self) -> str:
        return os.path.abspath(self.path)

    def describe(self) -> dict:
        stat = os.stat(self.path)
        return {"source": self.source, "file": [stat.st_size, stat.st_mtime_ns], "tile_m": self.tile_m,
                "stride_m": self.stride_m, "max_nodata": self.max_nodata}

    def plan(self) -> TileGallery:
        return TileGallery(plan_tiles(self.path, self.tile_m, self.stride_m, self.max_nodata))


Gallery = FileGallery | TileGallery


def list_aerial_dir(folder: str, positions_csv: str | None = None) -> FileGallery:
    """The images in `folder` (ids: file names without extension), with positions from VIGOR's names or from
    `positions_csv`."""
    if not os.path.isdir(folder):
        raise UsageError(f"--aerial_dir {folder}: not a folder; expected a folder of aerial images")
    paths = sorted(os.path.abspath(entry.path) for entry in os.scandir(folder)
                   if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise UsageError(f"--aerial_dir {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    ids = [Path(p).stem for p in paths]
    if positions_csv is not None:
        positions = _positions_from_csv(positions_csv, ids)
    else:
        parsed = [VIGOR_NAME.match(i) for i in ids]
        positions = np.array([(float(m[1]), float(m[2])) for m in parsed]) if all(parsed) else None
    return FileGallery(ids, paths, positions, os.path.abspath(folder))


def read_positions_csv(path: str, what: str) -> dict[str, tuple[float, float]]:
    """`name,latitude,longitude[,...]` lines after a header -> {name without extension: (lat, lon)}."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    found: dict[str, tuple[float, float]] = {}
    for number, row in enumerate(rows[1:], start=2):
        try:
            name, latitude, longitude = row[0].strip(), float(row[1]), float(row[2])
        except (IndexError, ValueError):
            raise UsageError(f"{what} {path}: line {number} {','.join(row)!r} is not name,latitude,longitude") from None
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise UsageError(f"{what} {path}: line {number} has latitude {latitude}, longitude {longitude}; "
                             "expected degrees (-90..90, -180..180)")
        found[Path(name).stem] = (latitude, longitude)
    if not found:
        raise UsageError(f"{what} {path}: no positions; expected a header line, then name,latitude,longitude lines")
    return found


def _positions_from_csv(path: str, ids: Sequence[str]) -> np.ndarray:
    found = read_positions_csv(path, "--positions")
    missing = [i for i in ids if i not in found]
    if missing:
        raise UsageError(f"--positions {path}: no position for {len(missing)} of the {len(ids)} images "
                         f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); expected a line for each")
    return np.array([found[i] for i in ids], np.float64)


def list_act_data(mat_path: str, split: str) -> FileGallery:
    """The panoIds of a CVACT-style index file (all, or one split's) with their aerial images and UTM positions."""
    # every split's read returns all panoIds and positions; "all" just ignores the split's indices
    pano_ids, utm, indices = read_act_data(mat_path, "train" if split == "all" else split)
    positions = np.arange(len(pano_ids)) if split == "all" else indices - 1
    ids = [pano_ids[i] for i in positions]
    sat_dir = os.path.join(os.path.dirname(os.path.abspath(mat_path)), "sat")
    paths = [os.path.join(sat_dir, f"{pano_id}_satView_polish.jpg") for pano_id in ids]
    check_files_exist(paths, f"aerial images of {mat_path} (--mat_split {split})",
                      f"expected {sat_dir}/<panoId>_satView_polish.jpg; --mat_split picks a split whose images "
                      "you have")
    return FileGallery(ids, paths, utm[positions], f"{os.path.abspath(mat_path)}:{split}", position_kind="utm")
