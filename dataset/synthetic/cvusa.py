"""The CVUSA layout: `sat/<id>.jpg`, `grd/<id>.png` and the 19zl split CSVs, ids counting from 0000001; or,
`raw`, the download's own `bingmap/19/<id>.jpg` and `streetview/panos/<id>.jpg` that the CSVs name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset.synthetic.render import encode


def cvusa_ids(count: int) -> list[str]:
    return [f"{number:07d}" for number in range(1, count + 1)]


RAW_SAT, RAW_GRD = "bingmap/19", "streetview/panos"


def _layout(raw: bool) -> tuple[str, str, str]:
    """(aerial folder, panorama folder, panorama suffix) of the reorganised layout or the download's."""
    return (RAW_SAT, RAW_GRD, ".jpg") if raw else ("sat", "grd", ".png")


def make_cvusa_folders(root: Path, raw: bool = False) -> None:
    for folder in (*_layout(raw)[:2], "splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)


def write_cvusa_pair(root: Path, pair_id: str, sat_jpg: bytes, grd_rgb: np.ndarray, raw: bool = False) -> None:
    sat_folder, grd_folder, grd_suffix = _layout(raw)
    (root / sat_folder / f"{pair_id}.jpg").write_bytes(sat_jpg)
    (root / grd_folder / f"{pair_id}{grd_suffix}").write_bytes(encode(grd_rgb, grd_suffix))


def write_cvusa_splits(root: Path, ids: list[str], num_train: int) -> None:
    """train-19zl.csv holds the first `num_train` ids, val-19zl.csv the rest, in the raw download's path style."""
    for name, split_ids in (("train-19zl.csv", ids[:num_train]), ("val-19zl.csv", ids[num_train:])):
        lines = [f"{RAW_SAT}/{i}.jpg,{RAW_GRD}/{i}.jpg,streetview/annotations/{i}.png\n" for i in split_ids]
        (root / "splits" / name).write_text("".join(lines))
