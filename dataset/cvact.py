"""CVACT: aerial / ground-panorama pairs indexed by ACT_data.mat, each with its UTM position."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.io
import torch

from dataset.base import PanoramaDataset
from dataset.errors import DatasetError, check_files_exist
from utils.image_cache import image_source

MAT_FILE = "ACT_data.mat"
# split -> (struct, field) of ACT_data.mat holding its 1-based positions in panoIds; "val" is CVACT_val,
# "test" is CVACT_test (valSetAll)
SPLIT_INDEX_FIELDS = {"train": ("trainSet", "trainInd"), "val": ("valSet", "valInd"), "test": ("valSetAll", "valInd")}
EXPECTED_FIELDS = "panoIds, utm (N x 2), trainSet.trainInd, valSet.valInd, valSetAll.valInd"


class CVACT(PanoramaDataset):
    """One split of CVACT; a sample is {"sat", "grd": uint8 CHW RGB, "index", "id", "utm": float64 (2,)}.

    `utm` (easting, northing in metres) lets the loss skip in-batch negatives closer than 25 m; `self.utm`
    holds the whole split's (N, 2) positions. Images: `root/sat/<id>_satView_polish.jpg` and
    `root/grd/<id>_grdView.jpg`. Every file is checked on construction. With `cache_dir` the images are decoded
    once into memory-mapped arrays there (`utils.image_cache`).
    """

    name = "CVACT"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        sat_size: tuple[int, int] = (256, 256),
        grd_size: tuple[int, int] = (128, 512),
        mat_file: str = MAT_FILE,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if split not in SPLIT_INDEX_FIELDS:
            raise ValueError(f"CVACT split must be one of {', '.join(SPLIT_INDEX_FIELDS)}, got {split!r}")
        self.root = os.fspath(root)
        self.split = split
        self.sat_size = tuple(sat_size)
        self.grd_size = tuple(grd_size)
        self.transforms = transforms
        self.mat_path = os.path.join(self.root, mat_file)
        self.ids: list[str] = []
        self.utm = np.zeros((0, 2), dtype=np.float64)
        self.sat_paths: list[str] = []
        self.grd_paths: list[str] = []
        self._verify()
        self.sat_images = image_source(self.sat_paths, self.sat_size, cache_dir, f"CVACT-{split}-sat", self.root,
                                       f"aerial images of CVACT {split}")
        self.grd_images = image_source(self.grd_paths, self.grd_size, cache_dir, f"CVACT-{split}-grd", self.root,
                                       f"panoramas of CVACT {split}")

    def _verify(self) -> None:
        """Read the split from ACT_data.mat and check the root, the file and every image, before training."""
        if not os.path.isdir(self.root):
            raise DatasetError(f"CVACT root {self.root} is not a directory; {self._expected_layout()}")
        pano_ids, utm, indices = read_act_data(self.mat_path, self.split)
        positions = indices - 1
        self.ids = [pano_ids[position] for position in positions]
        self.utm = utm[positions]
        self.sat_paths = [os.path.join(self.root, "sat", f"{pano_id}_satView_polish.jpg") for pano_id in self.ids]
        self.grd_paths = [os.path.join(self.root, "grd", f"{pano_id}_grdView.jpg") for pano_id in self.ids]
        what = f"images of the {self.split} split of {self.mat_path}"
        check_files_exist(self.sat_paths + self.grd_paths, what, self._expected_layout())

    def _expected_layout(self) -> str:
        return (
            f"expected in {self.root}: {os.path.basename(self.mat_path)}, sat/<panoId>_satView_polish.jpg "
            "and grd/<panoId>_grdView.jpg"
        )

    def _views(self, index: int) -> dict[str, torch.Tensor]:
        return {"sat": self.sat_images[index], "grd": self.grd_images[index]}

    def _labels(self, index: int) -> dict[str, torch.Tensor]:
        return {"utm": torch.tensor(self.utm[index], dtype=torch.float64)}


def read_act_data(path: str, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All panoIds, their (N, 2) float64 UTM positions, and the split's validated 1-based int64 indices."""
    if not os.path.isfile(path):
        raise DatasetError(f"CVACT index file {path} does not exist; expected a MATLAB file with {EXPECTED_FIELDS}")
    with open(path, "rb") as handle:
        if handle.read(19) == b"MATLAB 7.3 MAT-file":
            raise DatasetError(f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it as v7 in "
                               f"MATLAB or Octave: load('{path}'); save('{path}', '-v7')")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types for a foreign, truncated or v7.3 (HDF5) file
        raise DatasetError(f"{path} cannot be read as a MATLAB v5/v7 file ({type(exc).__name__}: {exc})") from exc
    pano_ids = [_as_text(value) for value in np.asarray(_field(mat, "panoIds", path)).ravel()]
    utm = _utm(_field(mat, "utm", path), len(pano_ids), path)
    struct, field = SPLIT_INDEX_FIELDS[split]
    indices = _indices(_struct_field(mat, struct, field, path), len(pano_ids), f"{path}: {struct}.{field}")
    return pano_ids, utm, indices


def _field(mat: dict[str, Any], name: str, path: str) -> Any:
    if name not in mat:
        raise DatasetError(f"{path} has no field {name}; expected {EXPECTED_FIELDS}")
    return mat[name]


def _struct_field(mat: dict[str, Any], struct: str, field: str, path: str) -> Any:
    """`mat[struct][field]` unwrapped from the 1 x 1 object arrays scipy loads MATLAB structs into."""
    value = _field(mat, struct, path)
    names = value.dtype.names if isinstance(value, np.ndarray) else None
    if not names or field not in names:
        raise DatasetError(f"{path} has no field {struct}.{field}; expected {EXPECTED_FIELDS}")
    return _unwrap(value[field])


def _unwrap(value: Any) -> Any:
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    return value


def _as_text(value: Any) -> str:
    """A panoId from a char array (padded with spaces) or a cell array (nested 1-element arrays)."""
    while isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        value = value.flat[0]
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip()


def _utm(value: Any, count: int, path: str) -> np.ndarray:
    utm = np.asarray(value)
    if not np.issubdtype(utm.dtype, np.number) or utm.shape != (count, 2):
        raise DatasetError(
            f"{path}: utm is a {utm.dtype} array of shape {utm.shape}, expected numbers of shape ({count}, 2), "
            "one (easting, northing) row per panoId"
        )
    return utm.astype(np.float64)


def _indices(value: Any, count: int, name: str) -> np.ndarray:
    """1-based positions (column, row or flat; integer or floating typed) checked to lie in 1..count."""
    indices = np.asarray(value)
    if indices.dtype == bool or not np.issubdtype(indices.dtype, np.number):
        raise DatasetError(f"{name} is a {indices.dtype} array, expected 1-based integer positions in panoIds")
    indices = indices.ravel()
    if indices.size == 0:
        raise DatasetError(f"{name} is empty: the split has no image pairs")
    if not np.all(np.isfinite(indices)) or not np.all(indices == np.round(indices)):
        raise DatasetError(f"{name} holds non-integer values, expected 1-based integer positions in panoIds")
    indices = indices.astype(np.int64)
    outside = indices[(indices < 1) | (indices > count)]
    if outside.size:
        raise DatasetError(f"{name} holds position {outside[0]} outside 1..{count} (1-based positions in panoIds)")
    return indices
