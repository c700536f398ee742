"""VIGOR end to end on the synthetic world: train, test, and figures that slow loops over the descriptors confirm."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import test as test_script
import train
from dataset.vigor import VIGOR, satellite_latlon
from tests.conftest import preserved_process_state
from tests.helpers import TINY_SIZES, run_script
from tests.utils.test_figures import assert_readable_png
from utils.geo import haversine_m

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)


def vigor_args(world: Path, results: Path, mode: str, *extra: str) -> list[str]:
    return ["--VIGOR", "--data_root_vigor", str(world / "VIGOR"), "--vigor_mode", mode, *TINY_SIZES, "--gpu", "-1",
            "--num_workers", "0", "--batch_size", "6", "--batch_size_val", "7", "--results_dir", str(results), *extra]


def slow_figures(sat: np.ndarray, grd: np.ndarray, queries: VIGOR) -> dict:
    """Recall, hit rate and top-1 error of every query, one reference at a time, by VIGOR's official rules."""
    closer, hits, errors = [], [], []
    tiles = np.array([satellite_latlon(name) for name in queries.gallery.ids])
    for q in range(len(grd)):
        similarity = [float(np.dot(grd[q], sat[r])) for r in range(len(sat))]
        labels = queries.labels[q].tolist()
        closer.append(sum(value > similarity[labels[0]] for value in similarity))
        # VIGOR's official hit: no tile that does not cover the query is strictly closer than its positive
        hits.append(all(similarity[r] <= similarity[labels[0]] for r in range(len(sat)) if r not in labels))
        top = max(range(len(sat)), key=lambda r: (similarity[r], -r))
        errors.append(float(haversine_m(tiles[top][None], queries.latlon[q][None])[0]))
    closer = np.array(closer)
    recall = {f"r@{k}": 100 * np.mean(closer < k) for k in (1, 5, 10)}
    recall["r@1%"] = 100 * np.mean(closer < int(0.01 * len(sat)) + 1)  # VIGOR's official cut-off
    return {"p2s": recall, "hit_rate": 100 * np.mean(hits), "median_m": float(np.median(errors)),
            "accuracy_10m": 100 * np.mean(np.array(errors) <= 10)}


@pytest.mark.parametrize(("mode", "test_cities"), [("same", 4), ("cross", 2)])
def test_train_and_test_on_the_synthetic_vigor_world(tiny_world, tmp_path, mode, test_cities):
    with preserved_process_state():
        assert train.main(vigor_args(tiny_world, tmp_path, mode, "--n_epochs", "1", "--no_pretrained",
                                     "--name", "run")) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    queries = VIGOR(tiny_world / "VIGOR", "test", mode)
    assert f"{len(queries)} queries against {len(queries.gallery)} references" in log and "hit rate" in log
    saved = tmp_path / "descriptors.npz"
    with preserved_process_state():
        assert test_script.main(vigor_args(tiny_world, tmp_path, mode, "--checkpoint", str(tmp_path / "run/best.ckpt"),
                                           "--name", "t", "--save_descriptors", str(saved))) == 0
    results = json.loads((tmp_path / "t" / "results.json").read_text())
    assert json.loads((tmp_path / "run" / "options.json").read_text())["vigor_mode"] == mode
    assert (results["dataset"], results["split"]) == ("VIGOR", f"{mode}-area test")
    assert results["num"] == len(queries) and results["gallery"] == len(queries.gallery)
    assert len({city for city in queries.gallery.city_of}) == test_cities and "s2p" not in results
    assert (results["fov"], results["orientation_noise"]) == (360.0, 0.0)
    descriptors = np.load(saved)
    assert list(descriptors["ids"]) == queries.ids and list(descriptors["sat_ids"]) == queries.gallery.ids
    expected = slow_figures(descriptors["sat"], descriptors["grd"], queries)
    assert results["p2s"] == pytest.approx(expected["p2s"])
    assert results["hit_rate"] == pytest.approx(expected["hit_rate"])
    assert results["localization"]["median_m"] == pytest.approx(expected["median_m"])
    assert results["localization"]["accuracy_10m"] == pytest.approx(expected["accuracy_10m"])
    assert list(results["localization"]["within_m"]) == [str(t) for t in range(1, 51)]
    for figure in ("recall_curve.png", "retrievals.png", "localization_error.png"):
        assert_readable_png(tmp_path / "t" / figure)
    row = list(csv.DictReader((tmp_path / "results.csv").open()))[-1]
    assert row["dataset"] == "VIGOR" and float(row["hit_rate"]) == pytest.approx(results["hit_rate"], abs=1e-4)
    assert row["s2p_r@1"] == "" and float(row["median_error_m"]) == pytest.approx(expected["median_m"], abs=1e-4)


def test_a_vigor_run_resumes_and_continues_its_schedule(tiny_world, tmp_path):
    with preserved_process_state():
        assert train.main(vigor_args(tiny_world, tmp_path, "cross", "--n_epochs", "1", "--no_pretrained",
                                     "--name", "run")) == 0
    with preserved_process_state():
        assert train.main(["--resume", str(tmp_path / "run"), "--n_epochs", "2"]) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "epoch 1 training" in log and log.count("validation, ") == 2


def test_ddp_over_two_cpu_processes_gives_the_single_process_vigor_figures(tiny_world, tmp_path):
    with preserved_process_state():
        assert train.main(vigor_args(tiny_world, tmp_path, "same", "--n_epochs", "1", "--no_pretrained",
                                     "--name", "run")) == 0
    common = ("--checkpoint", str(tmp_path / "run" / "best.ckpt"))
    with preserved_process_state():
        assert test_script.main(vigor_args(tiny_world, tmp_path, "same", *common, "--name", "one")) == 0
    result = run_script("test.py", *vigor_args(tiny_world, tmp_path, "same", *common, "--name", "two", "--cpu_procs",
                                               "2"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    assert (two["num"], two["gallery"]) == (one["num"], one["gallery"])  # padding of the shards dropped
    assert two["p2s"] == pytest.approx(one["p2s"]) and two["hit_rate"] == pytest.approx(one["hit_rate"])
    assert two["localization"]["median_m"] == pytest.approx(one["localization"]["median_m"])
    assert two["localization"]["within_m"] == pytest.approx(one["localization"]["within_m"])
