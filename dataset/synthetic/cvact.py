"""The CVACT layout: `sat/<panoId>_satView_polish.jpg`, `grd/<panoId>_grdView.jpg` and ACT_data.mat."""

from __future__ import annotations

import io
import string
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from dataset.synthetic.render import encode

PANO_ID_ALPHABET = np.array(list(string.ascii_letters + string.digits + "-_"))


def cvact_pano_ids(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct 22-character ids drawn from the alphabet of real CVACT panoIds."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids["".join(rng.choice(PANO_ID_ALPHABET, 22))] = None
    return list(ids)


def make_cvact_folders(root: Path) -> None:
    for folder in ("sat", "grd"):
        (root / folder).mkdir(parents=True, exist_ok=True)


def write_cvact_pair(root: Path, pano_id: str, sat_jpg: bytes, grd_rgb: np.ndarray) -> None:
    (root / "sat" / f"{pano_id}_satView_polish.jpg").write_bytes(sat_jpg)
    (root / "grd" / f"{pano_id}_grdView.jpg").write_bytes(encode(grd_rgb, ".jpg"))


def write_act_data(root: Path, pano_ids: list[str], utm: np.ndarray, num_train: int, seed: int) -> None:
    """ACT_data.mat: the first `num_train` panoIds train; valSet and valSetAll both hold the rest (1-based floats)."""
    train = np.arange(1, num_train + 1, dtype=np.float64)[:, None]
    val = np.arange(num_train + 1, len(pano_ids) + 1, dtype=np.float64)[:, None]
    content = {
        "panoIds": np.array(pano_ids),
        "utm": utm.astype(np.float64),
        "trainSet": {"trainInd": train},
        "valSet": {"valInd": val},
        "valSetAll": {"valInd": val},
    }
    _write_mat(root / "ACT_data.mat", content, seed)


def _write_mat(path: Path, content: dict[str, Any], seed: int) -> None:
    """scipy.io.savemat, with the header's creation time replaced so that equal worlds give equal files."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, content)
    data = bytearray(buffer.getvalue())
    data[:116] = f"MATLAB 5.0 MAT-file, synthetic world (seed {seed})".encode().ljust(116)
    path.write_bytes(bytes(data))
