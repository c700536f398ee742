import csv
import json

import numpy as np
import pytest
import torch

import test as test_script
from dataset.cvusa import CVUSA
from model.network import CrossViewNet
from tests.helpers import run_script, tiny_run_args
from utils.checkpoint import load_weights
from utils.cli import UsageError
from utils.images import to_model_range

RESULT_KEYS = {"dataset", "split", "num", "checkpoint", "p2s", "s2p"}
FIGURES = {"r@1", "r@5", "r@10", "r@1%"}


def read_results(folder):
    results = json.loads((folder / "results.json").read_text())
    assert RESULT_KEYS <= set(results) and set(results["p2s"]) == set(results["s2p"]) == FIGURES
    return results


def test_testing_a_trained_run_writes_results_and_prints_the_table(tiny_world, tiny_trained_run, tmp_path, capsys):
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(tiny_trained_run / "best.ckpt"), "--name", "t")
    assert test_script.main(args) == 0
    results = read_results(tmp_path / "t")
    assert (results["dataset"], results["split"], results["num"]) == ("CVUSA", "val", 13)
    summary = json.loads((tiny_trained_run / "summary.json").read_text())
    assert results["p2s"]["r@1"] == pytest.approx(summary["val/p2s_r@1"])
    printed = capsys.readouterr().out
    assert "ground->aerial" in printed and "R@1%" in printed and str(tmp_path / "t" / "results.json") in printed
    assert (tmp_path / "t" / "recall_curve.png").is_file() and (tmp_path / "t" / "retrievals.png").is_file()
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["run_folder"] == str(tmp_path / "t") and rows[0]["num"] == "13"


def test_published_weights_give_the_reference_models_descriptors(tiny_world, reference_checkpoint, tmp_path):
    path = tmp_path / "published.pth"
    torch.save(reference_checkpoint, path)
    saved = tmp_path / "descriptors.npz"
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(path), "--save_descriptors", str(saved))
    assert test_script.main(args) == 0
    dataset = CVUSA(tiny_world / "CVUSA", "val", (64, 64), (32, 128))
    net = CrossViewNet((64, 64), (32, 128)).eval()
    load_weights(net, path)
    batch = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        sat, grd = net(to_model_range(torch.stack([b["sat"] for b in batch])),
                       to_model_range(torch.stack([b["grd"] for b in batch])))
    arrays = np.load(saved)
    np.testing.assert_allclose(arrays["sat"], sat.numpy(), atol=1e-5)
    np.testing.assert_allclose(arrays["grd"], grd.numpy(), atol=1e-5)
    assert list(arrays["ids"]) == dataset.ids


def test_cvact_test_split_counts_matches_within_the_radius(tiny_world, tiny_trained_run, tmp_path):
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(tiny_trained_run / "last.ckpt"),
                         "--eval_split", "test", "--name", "act", dataset="CVACT")
    assert test_script.main(args) == 0
    results = read_results(tmp_path / "act")
    assert (results["dataset"], results["split"], results["match_radius_m"]) == ("CVACT", "test", 5.0)


def test_ddp_over_two_cpu_processes_gives_the_single_process_recall(tiny_world, tiny_trained_run, tmp_path):
    common = ("--checkpoint", str(tiny_trained_run / "best.ckpt"))
    assert test_script.main(tiny_run_args(tiny_world, tmp_path, *common, "--name", "one")) == 0
    result = run_script("test.py", *tiny_run_args(tiny_world, tmp_path, *common, "--name", "two", "--cpu_procs", "2"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    one, two = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    assert two["num"] == one["num"] == 13
    assert (two["p2s"], two["s2p"]) == (one["p2s"], one["s2p"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one", "two"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))  # one row per run: only rank 0 writes
    assert [row["run_folder"] for row in rows] == [str(tmp_path / "one"), str(tmp_path / "two")]


def test_testing_without_a_checkpoint_is_refused(tiny_world, tmp_path):
    with pytest.raises(UsageError, match="--checkpoint"):
        test_script.main(tiny_run_args(tiny_world, tmp_path))
