import csv
import json

import cv2
import numpy as np
import pytest
import torch

import test as test_script
from dataset.cvact import CVACT
from engine.options import UsageError
from model.network import CrossViewNet
from tests.helpers import TINY_SIZES, run_script, tiny_run_args
from tests.utils.test_figures import assert_readable_png
from utils.checkpoint import CheckpointError

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
    assert_readable_png(tmp_path / "t" / "recall_curve.png")
    assert_readable_png(tmp_path / "t" / "retrievals.png", min_bytes=20_000)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["run_folder"] == str(tmp_path / "t") and rows[0]["num"] == "13"


def authors_input(path):
    """An image file as the authors' loader hands it to their network: RGB, (x / 255 - 0.5) / 0.5, CHW."""
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32)
    return torch.from_numpy(((image / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy())


@pytest.mark.parametrize("cached", [False, True], ids=["decoded", "cached"])
def test_published_weights_give_the_descriptors_of_the_raw_files(tiny_world, reference_checkpoint, tmp_path, cached):
    path = tmp_path / "published.pth"
    torch.save(reference_checkpoint, path)
    saved = tmp_path / "descriptors.npz"
    cache = ["--cache_dir", str(tmp_path / "cache")] if cached else []
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(path), "--save_descriptors", str(saved), *cache)
    assert test_script.main(args) == 0
    if cached:  # the evaluation split's two views, decoded once, and said so in the run's log from the start
        assert [p.name.split("-")[:3] for p in sorted((tmp_path / "cache").glob("*.cache"))] == [
            ["CVUSA", "val", "grd"], ["CVUSA", "val", "sat"]]
        (log,) = tmp_path.glob("*/log.txt")
        first_lines = log.read_text().splitlines()[:4]
        assert "no cache yet; decoding 13 aerial images of CVUSA val at 64x64 once" in first_lines[0]
        assert "13 panoramas of CVUSA val written in" in first_lines[3]
    ids = [line.split(",")[0].rsplit("/", 1)[1][:-4]
           for line in (tiny_world / "CVUSA" / "splits" / "val-19zl.csv").read_text().splitlines()]
    net = CrossViewNet((64, 64), (32, 128)).eval()
    net.load_state_dict(reference_checkpoint["retrieval_model_dict"])
    with torch.no_grad():
        sat = net.embed_sat(torch.stack([authors_input(tiny_world / "CVUSA" / "sat" / f"{i}.jpg") for i in ids]))
        grd = net.embed_grd(torch.stack([authors_input(tiny_world / "CVUSA" / "grd" / f"{i}.png") for i in ids]))
    with np.load(saved) as arrays:
        np.testing.assert_allclose(arrays["sat"], sat.numpy(), atol=1e-5)
        np.testing.assert_allclose(arrays["grd"], grd.numpy(), atol=1e-5)
        assert list(arrays["ids"]) == ids


def test_cvact_val_through_test_py_is_one_to_one_on_val_set(tiny_world, tiny_trained_run, tmp_path):
    saved = tmp_path / "descriptors.npz"
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(tiny_trained_run / "last.ckpt"),
                         "--eval_split", "val", "--save_descriptors", str(saved), "--name", "act", dataset="CVACT")
    assert test_script.main(args) == 0
    results = read_results(tmp_path / "act")
    val = CVACT(tiny_world / "CVACT", "val", (64, 64), (32, 128))
    assert (results["split"], results["num"], results["protocol"]) == ("val", len(val), "one-to-one")
    with np.load(saved) as arrays:
        assert list(arrays["ids"]) == val.ids
        assert results["p2s"] == pytest.approx(slow_recall(arrays["sat"], arrays["grd"], val.utm, 0.0))


@pytest.mark.slow
def test_ddp_over_two_cpu_processes_gives_the_single_process_recall(tiny_world, tiny_trained_run, tmp_path):
    common = ("--checkpoint", str(tiny_trained_run / "best.ckpt"))
    single = ("--save_descriptors", str(tmp_path / "one.npz"))
    assert test_script.main(tiny_run_args(tiny_world, tmp_path, *common, "--name", "one", *single)) == 0
    args = tiny_run_args(tiny_world, tmp_path, *common, "--name", "two", "--cpu_procs", "2", "--save_descriptors",
                         str(tmp_path / "two.npz"))
    result = run_script("test.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Starting with 2 processes" in (tmp_path / "two" / "log.txt").read_text()  # Lightning's lines: the log's
    assert result.stderr == ""
    one, two = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    assert two["num"] == one["num"] == 13
    with np.load(tmp_path / "one.npz") as single, np.load(tmp_path / "two.npz") as gathered:
        assert list(gathered["ids"]) == list(single["ids"])
        for view in ("sat", "grd"):  # gathered from both processes into dataset order, padding dropped
            np.testing.assert_allclose(gathered[view], single[view], atol=1e-6)
    assert (tmp_path / "two" / "retrievals.png").read_bytes() == (tmp_path / "one" / "retrievals.png").read_bytes()
    assert (two["p2s"], two["s2p"]) == (one["p2s"], one["s2p"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one", "two"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))  # one row per run: only rank 0 writes
    assert [row["run_folder"] for row in rows] == [str(tmp_path / "one"), str(tmp_path / "two")]


def test_testing_without_a_checkpoint_is_refused(tiny_world, tmp_path):
    with pytest.raises(UsageError, match="--checkpoint"):
        test_script.main(tiny_run_args(tiny_world, tmp_path))


def args_without_sizes(world, results, *extra, dataset="CVUSA"):
    args = tiny_run_args(world, results, *extra, dataset=dataset)
    for flag in TINY_SIZES[::2]:
        position = args.index(flag)
        del args[position:position + 2]
    return args


def test_a_checkpoint_of_this_project_gives_its_own_sizes(tiny_world, tiny_trained_run, tmp_path):
    checkpoint = str(tiny_trained_run / "best.ckpt")
    assert test_script.main(args_without_sizes(tiny_world, tmp_path, "--checkpoint", checkpoint, "--name", "t")) == 0
    results = read_results(tmp_path / "t")
    assert (results["sat_size"], results["grd_size"], results["sa_num"], results["no_fc"]) == ([64, 64], [32, 128],
                                                                                               8, False)
    summary = json.loads((tiny_trained_run / "summary.json").read_text())
    assert results["p2s"]["r@1"] == pytest.approx(summary["val/p2s_r@1"])


@pytest.mark.parametrize(("flags", "message"), [
    (["--sa_num", "4"], r"tensor sa1\.w1 has shape \(64, 32, 8\) but the model expects \(64, 32, 4\); check --sa_num"),
    (["--sat_size_h", "128"], r"tensor sa1\.w1 .*; check --sat_size_h/--sat_size_w"),
    (["--no_fc"], "has spatial-aware FC layers .* drop --no_fc"),
    (["--sat_size_h", "32", "--sat_size_w", "128"],  # the same 64 positions: no tensor tells
     r"best\.ckpt was trained with --sat_size_h 64, but --sat_size_h 32 was given; drop the flag"),
])
def test_a_flag_that_contradicts_the_checkpoint_is_refused(tiny_world, tiny_trained_run, tmp_path, flags, message):
    args = args_without_sizes(tiny_world, tmp_path, "--checkpoint", str(tiny_trained_run / "best.ckpt"), *flags)
    with pytest.raises(CheckpointError, match=message):
        test_script.main(args)


@pytest.mark.parametrize("kwargs", [{"sa_num": 4}, {"use_fc": False}])
def test_published_weights_give_their_attention_maps_and_fc_layers(tiny_world, tmp_path, kwargs):
    path = tmp_path / "published.pth"
    torch.save({"retrieval_model_dict": CrossViewNet((64, 64), (32, 128), **kwargs).state_dict()}, path)
    assert test_script.main(tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(path), "--name", "t")) == 0
    results = read_results(tmp_path / "t")
    assert (results["sa_num"], results["no_fc"]) == ((4, False) if "sa_num" in kwargs else (8, True))


def test_train_py_with_test_runs_test_py_and_names_the_training_flags_as_unused(tiny_world, tiny_trained_run,
                                                                                tmp_path):
    import train

    common = ["--checkpoint", str(tiny_trained_run / "best.ckpt"), "--n_epochs", "300", "--lr", "0.5", "--isTrain",
              "--save_step", "5"]
    assert test_script.main(tiny_run_args(tiny_world, tmp_path, *common, "--name", "direct")) == 0
    assert train.main(tiny_run_args(tiny_world, tmp_path, *common, "--test", "--name", "via_train")) == 0
    direct, via_train = read_results(tmp_path / "direct"), read_results(tmp_path / "via_train")
    assert direct == via_train
    for run in ("direct", "via_train"):
        log = (tmp_path / run / "log.txt").read_text()
        assert "accepted but unused here: --isTrain, --save_step 5, --n_epochs 300, --batch_size 8, --lr 0.5\n" in log
        assert not (tmp_path / run / "last.ckpt").exists()


CLOSE_IDS = tuple(f"pano{n:02d}" for n in range(14))


def close_pairs_utm():
    """Seven places 40 m apart, two panoramas each, 3 m apart: within 5 m of each other, and nothing else is."""
    place = np.repeat(np.arange(7), 2)
    return np.stack([500000.0 + 40.0 * place + 3.0 * (np.arange(14) % 2), 6000000.0 + 0.0 * place], axis=1)


def slow_recall(sat, grd, utm, radius):
    """p2s recall in percent from loops: ground query j is found at k when fewer than k aerial images are
    strictly more similar than its most similar aerial image within `radius` (its own one when radius is 0)."""
    n = len(sat)
    similarity = grd @ sat.T
    closer = []
    for j in range(n):
        matches = [i for i in range(n) if i == j or (radius > 0 and np.hypot(*(utm[i] - utm[j])) <= radius)]
        best = max(similarity[j, i] for i in matches)
        closer.append(sum(1 for i in range(n) if similarity[j, i] > best))
    return {name: 100.0 * sum(c < k for c in closer) / n for name, k in
            (("r@1", 1), ("r@5", 5), ("r@10", 10), ("r@1%", 0.01 * n))}


def test_cvact_test_has_both_protocols_and_names_the_one_used(make_fake_cvact, tiny_trained_run, tmp_path):
    utm = close_pairs_utm()
    root = make_fake_cvact(pano_ids=CLOSE_IDS, train=(1, 2), val=(3, 4), val_all=tuple(range(1, 15)), utm=utm)
    figures = {}
    for radius, protocol in (("5", "within 5 m"), ("0", "one-to-one")):
        saved = tmp_path / f"descriptors_{radius}.npz"
        args = tiny_run_args(root.parent, tmp_path, "--checkpoint", str(tiny_trained_run / "best.ckpt"),
                             "--eval_split", "test", "--match_radius", radius, "--save_descriptors", str(saved),
                             "--name", f"r{radius}", dataset="CVACT")
        assert test_script.main(args) == 0
        results = read_results(tmp_path / f"r{radius}")
        assert (results["split"], results["num"], results["protocol"]) == ("test", 14, protocol)
        assert f"protocol: {protocol}" in (tmp_path / f"r{radius}" / "log.txt").read_text()
        with np.load(saved) as arrays:
            expected = slow_recall(arrays["sat"], arrays["grd"], utm, float(radius))
        assert results["p2s"] == pytest.approx(expected)
        figures[radius] = results["p2s"]
    assert figures["5"] != figures["0"]  # a neighbour 3 m away outranked some query's own aerial image
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [row["protocol"] for row in rows] == ["within 5 m", "one-to-one"]


def test_duplicate_images_at_one_position_tie_under_both_cvact_test_protocols(make_fake_cvact, reference_checkpoint,
                                                                            tmp_path):
    # Panorama 13 and its aerial image are copies of panorama 0's, taken at the same position. With 14 images in
    # batches of 13 they are embedded in a batch of 13 and one of 1 (whose kernels round otherwise), yet get the
    # same descriptors, so each query's own aerial image and the other copy tie: both count as found, under the
    # 5 m rule and one-to-one alike.
    utm = close_pairs_utm()
    utm[13] = utm[0]
    root = make_fake_cvact(pano_ids=CLOSE_IDS, train=(1, 2), val=(3, 4), val_all=tuple(range(1, 15)), utm=utm)
    for view, suffix in (("sat", "_satView_polish.jpg"), ("grd", "_grdView.jpg")):
        (root / view / f"{CLOSE_IDS[13]}{suffix}").write_bytes((root / view / f"{CLOSE_IDS[0]}{suffix}").read_bytes())
    published = tmp_path / "published.pth"
    torch.save(reference_checkpoint, published)
    for radius in ("5", "0"):
        saved = tmp_path / f"descriptors_{radius}.npz"
        args = tiny_run_args(root.parent, tmp_path, "--checkpoint", str(published), "--eval_split", "test",
                             "--match_radius", radius, "--save_descriptors", str(saved), "--name", f"r{radius}",
                             "--batch_size_val", "13", dataset="CVACT")
        assert test_script.main(args) == 0
        with np.load(saved) as arrays:
            sat, grd = arrays["sat"], arrays["grd"]
        assert np.array_equal(sat[0], sat[13]) and np.array_equal(grd[0], grd[13])
        similarity = grd @ sat.T  # one product: the copies' columns are equal, so they tie exactly
        assert similarity[0, 0] == similarity[0, 13] and similarity[13, 13] == similarity[13, 0]
        assert read_results(tmp_path / f"r{radius}")["p2s"] == pytest.approx(slow_recall(sat, grd, utm,
                                                                                          float(radius)))


def test_a_negative_match_radius_is_refused(tiny_world, tiny_trained_run, tmp_path):
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(tiny_trained_run / "best.ckpt"),
                         "--match_radius", "-1", dataset="CVACT")
    with pytest.raises(UsageError, match="--match_radius -1: expected metres >= 0"):
        test_script.main(args)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_large"])
def test_published_format_weights_of_another_backbone_are_told_by_their_tensors(tiny_world, tmp_path, backbone):
    path = tmp_path / "published.pth"
    torch.save({"retrieval_model_dict": CrossViewNet((64, 64), (32, 128), backbone=backbone).state_dict()}, path)
    assert test_script.main(tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(path), "--name", "t")) == 0
    assert read_results(tmp_path / "t")["backbone"] == backbone
    (row,) = csv.DictReader((tmp_path / "results.csv").read_text().splitlines())
    assert row["backbone"] == backbone
    with pytest.raises(CheckpointError, match="does not fit the model: .*; check --backbone"):
        test_script.main(tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(path), "--backbone", "resnet34"))


@pytest.mark.slow
def test_a_run_trained_with_another_backbone_states_it_in_its_checkpoint(tiny_world, tmp_path):
    import train

    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--backbone",
                         "mobilenet_v3_large", "--name", "run")
    assert train.main(args) == 0
    checkpoint = str(tmp_path / "run" / "best.ckpt")
    assert torch.load(checkpoint, weights_only=False)["hyper_parameters"]["backbone"] == "mobilenet_v3_large"
    assert test_script.main(args_without_sizes(tiny_world, tmp_path, "--checkpoint", checkpoint, "--name", "t")) == 0
    assert read_results(tmp_path / "t")["backbone"] == "mobilenet_v3_large"
    with pytest.raises(CheckpointError, match="trained with --backbone mobilenet_v3_large, but --backbone resnet18"):
        test_script.main(args_without_sizes(tiny_world, tmp_path, "--checkpoint", checkpoint, "--backbone", "resnet18"))
    with pytest.raises(UsageError, match="--backbone vgg16: expected one of resnet34, (.*, )?resnet18, "
                                         "(.*, )?mobilenet_v3_large"):
        test_script.main(args_without_sizes(tiny_world, tmp_path, "--checkpoint", checkpoint, "--backbone", "vgg16"))
