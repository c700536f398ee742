"""VIGOR (Zhu et al., CVPR 2021): panoramas of four US cities against a gallery of overlapping aerial tiles.

Unlike CVUSA and CVACT the gallery is not one-to-one with the queries: every panorama lies on four tiles, its
positive (the tile whose central quarter holds it) and three semi-positives, many panoramas share a positive
and some tiles are nobody's. Same-area: train and test in all four cities; cross-area: train in NewYork and
Seattle, test in SanFrancisco and Chicago.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.base import PanoramaDataset
from dataset.errors import DatasetError, check_files_exist
from utils.image_cache import image_source

CITIES = ("Chicago", "NewYork", "SanFrancisco", "Seattle")
MODES = ("same", "cross")
SPLITS = ("train", "test")
CROSS_AREA_CITIES = {"train": ("NewYork", "Seattle"), "test": ("SanFrancisco", "Chicago")}
SATELLITE_LIST = "satellite_list.txt"
LABEL_FILES = {("same", "train"): "same_area_balanced_train.txt", ("same", "test"): "same_area_balanced_test.txt",
               ("cross", "train"): "pano_label_balanced.txt", ("cross", "test"): "pano_label_balanced.txt"}
LABEL_COLUMNS = 13
EXAMPLE_LINE = "<panoid>,<lat>,<lon>,.jpg satellite_<lat>_<lon>.png <delta_y> <delta_x> (then three more tiles)"
LAYOUT = ("expected VIGOR/<City>/panorama/<panoid>,<lat>,<lon>,.jpg, VIGOR/<City>/satellite/satellite_<lat>_<lon>.png "
          f"and VIGOR/splits/<City>/{{{SATELLITE_LIST}, {', '.join(sorted(set(LABEL_FILES.values())))}}} "
          f"for the cities {', '.join(CITIES)}")


def split_cities(mode: str, split: str) -> tuple[str, ...]:
    """The cities whose panoramas and tiles a split holds."""
    if mode not in MODES:
        raise ValueError(f"VIGOR mode must be one of {', '.join(MODES)}, got {mode!r}")
    if split not in SPLITS:
        raise ValueError(f"VIGOR split must be one of {', '.join(SPLITS)}, got {split!r}")
    return CITIES if mode == "same" else CROSS_AREA_CITIES[split]


def satellite_latlon(name: str) -> tuple[float, float]:
    """(latitude, longitude) of a tile's centre from its name, `satellite_<lat>_<lon>.png`."""
    stem, extension = os.path.splitext(name)
    parts = stem.split("_")
    if len(parts) != 3 or parts[0] != "satellite" or extension.lower() not in (".png", ".jpg"):
        raise ValueError(f"expected satellite_<lat>_<lon>.png, got {name!r}")
    return _degrees(parts[1], parts[2], name, "satellite_<lat>_<lon>.png")


def panorama_latlon(name: str) -> tuple[float, float]:
    """(latitude, longitude) of a panorama from its name, `<panoid>,<lat>,<lon>,.jpg`."""
    parts = name.split(",")
    if len(parts) != 4 or not parts[0] or parts[3].lower() not in (".jpg", ".png"):
        raise ValueError(f"expected <panoid>,<lat>,<lon>,.jpg, got {name!r}")
    return _degrees(parts[1], parts[2], name, "<panoid>,<lat>,<lon>,.jpg")


def _degrees(latitude: str, longitude: str, name: str, pattern: str) -> tuple[float, float]:
    try:
        position = float(latitude), float(longitude)
    except ValueError:
        raise ValueError(f"expected {pattern} with numbers for <lat> and <lon>, got {name!r}") from None
    if not (-90 <= position[0] <= 90 and -180 <= position[1] <= 180):
        raise ValueError(f"expected {pattern} with a latitude in [-90, 90] and a longitude in [-180, 180], "
                         f"got {name!r}")
    return position


class VIGORGallery(Dataset):
    """The aerial tiles of a split's cities, in city order then `satellite_list.txt` order.

    A sample is {"sat": uint8 CHW RGB, "index", "id": file name, "latlon": float64 (2,), the tile's centre}.
    """

    def __init__(self, root: str | os.PathLike, cities: tuple[str, ...], sat_size: tuple[int, int] = (256, 256),
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.root = os.fspath(root)
        self.cities = tuple(cities)
        self.sat_size = tuple(sat_size)
        self.transforms = transforms
        self.ids: list[str] = []
        self.paths: list[str] = []
        self.city_of: list[str] = []
        self.latlon = np.zeros((0, 2))
        self._verify()
        self.images = image_source(self.paths, self.sat_size, cache_dir, f"VIGOR-{'+'.join(self.cities)}-satellite",
                                   self.root, f"satellite tiles of {', '.join(self.cities)}")
        self.position = {(city, name): i for i, (city, name) in enumerate(zip(self.city_of, self.ids, strict=True))}

    def _verify(self) -> None:
        _check_root(self.root, self.cities)
        latlon = []
        for city in self.cities:
            path = os.path.join(self.root, "splits", city, SATELLITE_LIST)
            for line_number, name in _lines(path):
                try:
                    latlon.append(satellite_latlon(name))
                except ValueError as exc:
                    raise DatasetError(f"{path} line {line_number}: {exc}") from None
                self.ids.append(name)
                self.city_of.append(city)
                self.paths.append(os.path.join(self.root, city, "satellite", name))
        if not self.ids:
            raise DatasetError(f"VIGOR {', '.join(self.cities)}: the satellite lists name no tiles; {LAYOUT}")
        self.latlon = np.asarray(latlon, np.float64)
        check_files_exist(self.paths, f"satellite images of {', '.join(self.cities)}", LAYOUT)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = range(len(self))[index]
        sample = {"sat": self.images[index], "index": index,
                  "id": self.ids[index], "latlon": torch.tensor(self.latlon[index], dtype=torch.float64)}
        return sample if self.transforms is None else self.transforms(sample)


class VIGOR(PanoramaDataset):
    """The panoramas of one VIGOR split with their labels, against `self.gallery` (a `VIGORGallery`).

    A sample is {"grd": uint8 CHW RGB, "index", "id", "positive": the positive tile's index in the gallery,
    "semi_positives": int64 (3,), "latlon": float64 (2,) the panorama's position, "delta": float32 (4, 2) its
    (delta_y, delta_x) offsets from the four tiles' centres}; with `pairs` also "sat", the positive tile.
    The deltas are read as the label files give them, in the tile's pixels with VIGOR's sign convention:
    delta_y to the south (down the image), delta_x to the west, so the panorama stands at row H/2 + delta_y,
    column W/2 - delta_x, and VIGOR's evaluate_from_npy.py places it at `centre - Lat_Lng(centre) * delta / 320`.
    Training reads pairs; evaluation reads the panoramas alone and the gallery apart. With `cache_dir` the
    images of both are decoded once into memory-mapped arrays there (`utils.image_cache`).
    """

    name = "VIGOR"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        mode: str = "same",
        sat_size: tuple[int, int] = (256, 256),
        grd_size: tuple[int, int] = (128, 512),
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        pairs: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.root = os.fspath(root)
        self.split = split
        self.mode = mode
        self.cities = split_cities(mode, split)
        self.sat_size = tuple(sat_size)
        self.grd_size = tuple(grd_size)
        self.transforms = transforms
        self.pairs = split == "train" if pairs is None else pairs
        self.gallery = VIGORGallery(self.root, self.cities, self.sat_size, cache_dir=cache_dir)
        self.ids: list[str] = []
        self.grd_paths: list[str] = []
        self.latlon = np.zeros((0, 2))
        self.labels = np.zeros((0, 4), np.int64)
        self.delta = np.zeros((0, 4, 2), np.float32)
        self._verify()
        self.grd_images = image_source(self.grd_paths, self.grd_size, cache_dir, f"VIGOR-{mode}-{split}-panorama",
                                       self.root, f"panoramas of VIGOR {mode}-area {split}")

    @property
    def positive(self) -> np.ndarray:
        return self.labels[:, 0]

    @property
    def semi_positives(self) -> np.ndarray:
        return self.labels[:, 1:]

    def _verify(self) -> None:
        """Read every city's label file and check each line, each tile it names and each image, before training."""
        latlon, labels, delta = [], [], []
        for city in self.cities:
            path = os.path.join(self.root, "splits", city, LABEL_FILES[self.mode, self.split])
            for line_number, line in _lines(path):
                fields = line.split()
                where = f"{path} line {line_number}"
                if len(fields) != LABEL_COLUMNS:
                    raise DatasetError(f"{where}: expected {LABEL_COLUMNS} columns, {EXAMPLE_LINE}; got "
                                       f"{len(fields)}: {line[:120]!r}")
                try:
                    latlon.append(panorama_latlon(fields[0]))
                    # (delta_y to the south, delta_x to the west) of each tile, as VIGOR's code reads them
                    delta.append([[float(fields[k + 1]), float(fields[k + 2])] for k in range(1, LABEL_COLUMNS, 3)])
                except ValueError as exc:
                    raise DatasetError(f"{where}: {exc}") from None
                tiles = []
                for name in fields[1::3]:
                    if (city, name) not in self.gallery.position:
                        raise DatasetError(f"{where}: tile {name} is not in "
                                           f"{os.path.join(self.root, 'splits', city, SATELLITE_LIST)}")
                    tiles.append(self.gallery.position[city, name])
                labels.append(tiles)
                self.ids.append(fields[0])
                self.grd_paths.append(os.path.join(self.root, city, "panorama", fields[0]))
        if not self.ids:
            raise DatasetError(f"VIGOR {self.mode}-area {self.split}: the label files list no panoramas; {LAYOUT}")
        self.latlon = np.asarray(latlon, np.float64)
        self.labels = np.asarray(labels, np.int64)
        self.delta = np.asarray(delta, np.float32)
        check_files_exist(self.grd_paths, f"panoramas of the VIGOR {self.mode}-area {self.split} split", LAYOUT)

    def _views(self, index: int) -> dict[str, torch.Tensor]:
        views = {"grd": self.grd_images[index]}
        if self.pairs:
            views["sat"] = self.gallery.images[int(self.labels[index, 0])]
        return views

    def _labels(self, index: int) -> dict[str, Any]:
        return {
            "positive": int(self.labels[index, 0]),
            "semi_positives": torch.from_numpy(self.labels[index, 1:].copy()),
            "latlon": torch.tensor(self.latlon[index], dtype=torch.float64),
            "delta": torch.from_numpy(self.delta[index].copy()),
        }

    def _aerial_of(self, sample: dict[str, Any]) -> torch.Tensor:
        """The pair's tile, or for a panorama alone its positive tile from the gallery."""
        return sample["sat"] if "sat" in sample else self.gallery[int(sample["positive"])]["sat"]


def _check_root(root: str, cities: tuple[str, ...]) -> None:
    if not os.path.isdir(root):
        raise DatasetError(f"VIGOR root {root} is not a directory; {LAYOUT}")
    for city in cities:
        for folder in (os.path.join(root, city), os.path.join(root, "splits", city)):
            if not os.path.isdir(folder):
                raise DatasetError(f"VIGOR city folder {folder} does not exist; {LAYOUT}")


def _lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of a split file's non-empty lines."""
    if not os.path.isfile(path):
        raise DatasetError(f"VIGOR split file {path} does not exist; {LAYOUT}")
    with open(path, encoding="utf-8") as lines:
        return [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
