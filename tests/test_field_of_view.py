"""Limited field of view and unknown orientation end to end: trained, tested alike every time, 360/0 is no flag."""

from __future__ import annotations

import json

import numpy as np
import pytest

import test as test_script
import train
from tests.conftest import preserved_process_state
from tests.helpers import tiny_run_args

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)


def results(folder) -> dict:
    return json.loads((folder / "results.json").read_text())


@pytest.fixture(scope="module")
def limited_run(tiny_world, tmp_path_factory):
    """One epoch on CVUSA with a 90-degree view turned at random."""
    out = tmp_path_factory.mktemp("fov")
    args = tiny_run_args(tiny_world, out, "--n_epochs", "1", "--no_pretrained", "--fov", "90",
                         "--orientation_noise", "360", "--name", "run")
    with preserved_process_state():
        assert train.main(args) == 0
    return out / "run"


def test_a_limited_view_trains_a_head_for_the_slice_and_tests_alike_every_time(tiny_world, limited_run, tmp_path):
    checkpoint = ("--checkpoint", str(limited_run / "best.ckpt"))
    runs = {}
    for name, extra in (("a", ()), ("b", ()), ("seed", ("--seed", "11"))):
        saved = tmp_path / f"{name}.npz"
        args = tiny_run_args(tiny_world, tmp_path, *checkpoint, "--name", name, "--save_descriptors", str(saved),
                             *extra)
        with preserved_process_state():
            assert test_script.main(args) == 0
        runs[name] = (results(tmp_path / name), np.load(saved))
    first, again, other = runs["a"], runs["b"], runs["seed"]
    assert (first[0]["fov"], first[0]["orientation_noise"]) == (90.0, 360.0)  # both from the checkpoint's run
    assert first[0]["grd_size"] == [32, 128]  # the panoramas' size; the ground branch sees 32 columns of it
    summary = json.loads((limited_run / "summary.json").read_text())
    assert first[0]["p2s"]["r@1"] == pytest.approx(summary["val/p2s_r@1"])  # validation drew the same crops
    assert (first[0]["p2s"], first[0]["s2p"]) == (again[0]["p2s"], again[0]["s2p"])
    np.testing.assert_array_equal(first[1]["grd"], again[1]["grd"])
    assert not np.allclose(first[1]["grd"], other[1]["grd"])  # another seed, other turns
    np.testing.assert_array_equal(first[1]["sat"], other[1]["sat"])
    row = (tmp_path / "results.csv").read_text().splitlines()[1]
    assert ",90.0,360.0," in row


def test_a_full_view_without_turns_is_the_same_as_no_flag(tiny_world, tiny_trained_run, tmp_path):
    checkpoint = ("--checkpoint", str(tiny_trained_run / "best.ckpt"))
    for name, extra in (("plain", ()), ("flags", ("--fov", "360", "--orientation_noise", "0"))):
        args = tiny_run_args(tiny_world, tmp_path, *checkpoint, "--name", name, "--save_descriptors",
                             str(tmp_path / f"{name}.npz"), *extra)
        with preserved_process_state():
            assert test_script.main(args) == 0
    plain, flags = results(tmp_path / "plain"), results(tmp_path / "flags")
    assert (plain["p2s"], plain["s2p"]) == (flags["p2s"], flags["s2p"])
    with np.load(tmp_path / "plain.npz") as first, np.load(tmp_path / "flags.npz") as second:
        for view in ("sat", "grd"):
            np.testing.assert_array_equal(first[view], second[view])


def test_a_view_that_contradicts_the_checkpoint_is_refused_and_bad_values_in_one_line(tiny_world, limited_run,
                                                                                       tmp_path):
    from engine.options import UsageError
    from utils.checkpoint import CheckpointError

    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(limited_run / "best.ckpt"), "--fov", "180")
    with pytest.raises(CheckpointError, match=r"sa2\.w1 .*check --grd_size_h/--grd_size_w/--fov"):
        test_script.main(args)
    for flags, message in ((["--fov", "0"], r"--fov 0: expected degrees in \(0, 360\]"),
                           (["--orientation_noise", "400"], r"--orientation_noise 400: expected degrees in \[0, 360")):
        with pytest.raises(UsageError, match=message):
            train.main(tiny_run_args(tiny_world, tmp_path, *flags))


def test_localize_takes_each_image_as_the_view_the_checkpoint_was_trained_for(tiny_world, limited_run, tmp_path,
                                                                               capsys):
    import shutil

    import cv2

    import localize
    from dataset.cvusa import CVUSA
    from dataset.views import LimitedFieldOfView
    from tests.test_localize import localize_args, printed_matches

    saved = tmp_path / "descriptors.npz"
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(limited_run / "best.ckpt"), "--save_descriptors",
                         str(saved))
    with preserved_process_state():
        assert test_script.main(args) == 0
    crops = CVUSA(tiny_world / "CVUSA", "val", (64, 64), (32, 128), transforms=LimitedFieldOfView(90, 360, seed=10))
    (tmp_path / "aerial").mkdir()
    views = []
    for index in range(len(crops)):
        shutil.copy(crops.sat_paths[index], tmp_path / "aerial")
        views.append(tmp_path / f"view_{crops.ids[index]}.png")  # the slice test.py evaluated, as a photo
        cv2.imwrite(str(views[-1]), cv2.cvtColor(crops[index]["grd"].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR))
    capsys.readouterr()
    assert localize.main(localize_args(limited_run / "best.ckpt", "--aerial_dir", str(tmp_path / "aerial"),
                                       "--top_k", "13", *map(str, views))) == 0
    printed = printed_matches(capsys.readouterr().out)
    arrays = np.load(saved)
    similarities = arrays["grd"] @ arrays["sat"].T
    for query, (pair_id, view) in enumerate(zip(crops.ids, views, strict=True)):
        expected = 1 + int(np.sum(similarities[query] > similarities[query, query]))
        assert [match for match, _ in printed[str(view)]].index(pair_id) + 1 == expected


def test_visualize_draws_the_maps_of_a_limited_view(tiny_world, limited_run, tmp_path, capsys):
    import visualize
    from tests.utils.test_figures import assert_readable_png

    out = tmp_path / "maps.png"
    args = ["--CVUSA", "--data_root_cvusa", str(tiny_world / "CVUSA"), "--gpu", "-1", "--checkpoint",
            str(limited_run / "best.ckpt"), "--orientation_noise", "360", "--num_samples", "2", "--out", str(out)]
    assert visualize.main(args) == 0
    assert_readable_png(out)
    assert "attention maps of 2 pairs" in capsys.readouterr().out
