"""Shared test fixtures. Add new fixtures below; keep each small and named for what it builds."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch

from tests.helpers import FIXTURES, tiny_run_args
from tests.offline_site import sitecustomize  # noqa: F401  (the network guard, for this process too)
from tests.reference_weights import reference_checkpoint as build_reference_checkpoint
from utils.image_check import RECORD_DIR_ENV

LOGGERS = ("cvgl", "pytorch_lightning", "lightning_fabric", "py.warnings")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The figures computed by the authors' code, kept in tests/fixtures (see its README)."""
    return FIXTURES


@pytest.fixture(scope="session")
def reference_checkpoint() -> dict:
    """The published-format checkpoint rebuilt from the fixture manifest by the fixtures' closed-form rule."""
    return build_reference_checkpoint(FIXTURES / "reference_state_small.json")


@contextlib.contextmanager
def preserved_process_state():
    """Whatever an entry point run in this process changes is put back: environment variables (the run
    folder, Lightning's seed), random states, the log handlers setup_logging adds, torch's determinism."""
    environ = dict(os.environ)
    random_states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    handlers = {name: list(logging.getLogger(name).handlers) for name in LOGGERS}
    deterministic, cudnn_benchmark = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    show_warning = warnings.showwarning
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        random.setstate(random_states[0])
        np.random.set_state(random_states[1])
        torch.set_rng_state(random_states[2])
        for name, kept in handlers.items():
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if h not in kept]:
                handler.close()
            logger.handlers = kept  # also those a quiet run took off (Lightning's console handler)
        warnings.showwarning = show_warning  # a quiet run sends warnings to its log (logging.captureWarnings)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = cudnn_benchmark


def repository_entries() -> set[str]:
    return {entry.name for entry in REPO_ROOT.iterdir() if not entry.name.startswith(".")}


@pytest.fixture(scope="session", autouse=True)
def repository_left_alone():
    """No test writes into the repository: runs, results and figures go to tmp_path."""
    before = repository_entries()
    yield
    assert repository_entries() == before, f"the tests wrote {sorted(repository_entries() - before)} into {REPO_ROOT}"


@pytest.fixture(scope="session", autouse=True)
def checked_images_record_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """The image check's record goes to a folder of the test session, not the user's ~/.cache; scripts run
    in subprocesses inherit it through the environment."""
    os.environ[RECORD_DIR_ENV] = str(tmp_path_factory.mktemp("checked-images"))
    yield
    os.environ.pop(RECORD_DIR_ENV, None)


@pytest.fixture(autouse=True)
def isolated_process_state():
    """No test sees what an earlier one left in the process."""
    with preserved_process_state():
        yield


def write_image(path: Path, size_hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Write a random BGR image (format from the suffix) and return the pixels written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image), path
    return image


FAKE_CVUSA_TRAIN = ("0000001", "0000002", "0000003", "0000004")
FAKE_CVUSA_VAL = ("0000005", "0000006", "0000007")


@pytest.fixture
def make_fake_cvusa(tmp_path: Path):
    """Factory writing a tiny CVUSA (64x64 aerial, 32x128 panorama) with the real file names and CSV lines.

    raw=True writes the download's own paths (bingmap/19/, streetview/panos/) instead of sat/ and grd/;
    subset=True writes ids like input0000001 in two-part CSV paths (bingmap/input0000001.png,...).
    """

    def make(train_ids=FAKE_CVUSA_TRAIN, val_ids=FAKE_CVUSA_VAL, raw: bool = False, subset: bool = False) -> Path:
        root = tmp_path / "CVUSA"
        (root / "splits").mkdir(parents=True)
        for csv_name, ids in (("train-19zl.csv", train_ids), ("val-19zl.csv", val_ids)):
            lines = []
            for pair_id in ids:
                if subset:
                    columns = (f"bingmap/{pair_id}.png", f"streetview/{pair_id}.jpg", f"annotations/{pair_id}.png")
                else:
                    columns = (
                        f"bingmap/19/{pair_id}.jpg",
                        f"streetview/panos/{pair_id}.jpg",
                        f"streetview/annotations/{pair_id}.png",
                    )
                sat, grd = (columns[0], columns[1]) if raw else (f"sat/{pair_id}.jpg", f"grd/{pair_id}.png")
                write_image(root / sat, (64, 64), seed=zlib.crc32(sat.encode()))
                write_image(root / grd, (32, 128), seed=zlib.crc32(grd.encode()))
                lines.append(",".join(columns) + "\n")
            (root / "splits" / csv_name).write_text("".join(lines))
        return root

    return make


@pytest.fixture
def fake_cvusa_root(make_fake_cvusa) -> Path:
    """A tiny CVUSA in the reorganised layout: 4 training and 3 validation pairs."""
    return make_fake_cvusa()


FAKE_CVACT_IDS = ("__-DFIFxvZBCn1873qkqXA", "-0aBcDeFgHiJkLmNoPqRsT", "Zz9_aBcDeFgHiJkLmNoPqR", "q1", "X-y_z123", "ab")


@pytest.fixture
def make_fake_cvact(tmp_path: Path):
    """Factory writing a tiny CVACT: ACT_data.mat (written as MATLAB structs) and 64x64 / 32x128 images.

    panoIds are written as a char matrix padded with spaces (cell_ids=True: a cell array). Indices are 1-based,
    written as column vectors of `index_dtype` (or reshaped to `index_shape`); `fields` overrides or removes
    (value None) top-level entries of the .mat file.
    """

    def make(
        pano_ids=FAKE_CVACT_IDS,
        train=(1, 2, 3),
        val=(4, 5),
        val_all=(4, 5, 6),
        index_dtype=np.float64,
        index_shape=(-1, 1),
        utm=None,
        cell_ids: bool = False,
        fields: dict | None = None,
    ) -> Path:
        root = tmp_path / "CVACT"
        root.mkdir()
        for number, pano_id in enumerate(pano_ids):
            write_image(root / "sat" / f"{pano_id}_satView_polish.jpg", (64, 64), seed=2 * number)
            write_image(root / "grd" / f"{pano_id}_grdView.jpg", (32, 128), seed=2 * number + 1)

        def indices(values):
            return np.asarray(values, dtype=index_dtype).reshape(index_shape)

        content = {
            "panoIds": np.array(pano_ids, dtype=object if cell_ids else str),
            "utm": fake_cvact_utm(len(pano_ids)) if utm is None else utm,
            "trainSet": {"trainInd": indices(train)},
            "valSet": {"valInd": indices(val)},
            "valSetAll": {"valInd": indices(val_all)},
        }
        for name, value in (fields or {}).items():
            if value is None:
                del content[name]
            else:
                content[name] = value
        scipy.io.savemat(root / "ACT_data.mat", content)
        return root

    return make


def fake_cvact_utm(count: int) -> np.ndarray:
    """(easting, northing) of the fake panoramas: 30 m apart along a line in Canberra's UTM zone."""
    return np.stack([690000.0 + 30.0 * np.arange(count), 6090000.0 + 0.5 * np.arange(count)], axis=1)


@pytest.fixture
def fake_cvact_root(make_fake_cvact) -> Path:
    """A tiny CVACT of 6 panoramas: train 1-3, val 4-5, test (valSetAll) 4-6, float-typed column indices."""
    return make_fake_cvact()


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic world in both layouts: 24 training pairs, 13 held-out (odd, so DDP pads)."""
    from dataset.synthetic import generate

    out = tmp_path_factory.mktemp("world")
    generate(out, num_train=24, num_val=13, seed=3, sat_size=(64, 64), grd_size=(32, 128), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_trained_run(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of two CVUSA epochs from scratch on the tiny world."""
    import train

    results = tmp_path_factory.mktemp("results")
    args = tiny_run_args(tiny_world, results, "--n_epochs", "2", "--no_pretrained", "--name", "run")
    with preserved_process_state():
        assert train.main(args) == 0
    return results / "run"
