import json
import shutil

import numpy as np
import pytest
import torch

import test as test_script
import train
from tests.helpers import run_script, tiny_run_args
from utils.checkpoint import read_checkpoint
from utils.cli import UsageError


def test_a_run_folder_holds_options_log_and_checkpoints(tiny_trained_run):
    names = {p.name for p in tiny_trained_run.iterdir()}
    assert {"options.json", "log.txt", "best.ckpt", "last.ckpt", "summary.json", "tensorboard"} <= names
    options = json.loads((tiny_trained_run / "options.json").read_text())
    assert options["n_epochs"] == 2 and options["sa_num"] == 8
    summary = json.loads((tiny_trained_run / "summary.json").read_text())
    assert 0 <= summary["val/p2s_r@1"] <= 100
    log = (tiny_trained_run / "log.txt").read_text()
    assert "Options" in log
    assert "epoch 0 validation, 13 pairs: p2s R@1 " in log and "epoch 1 validation, 13 pairs: " in log
    assert read_checkpoint(tiny_trained_run / "last.ckpt")["epoch"] == 1


def test_resuming_from_last_checkpoint_trains_the_third_epoch_in_the_same_folder(tiny_world, tiny_trained_run,
                                                                                  tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run)
    before = read_checkpoint(run / "last.ckpt")
    args = ["--n_epochs", "3", "--checkpoint", str(run / "last.ckpt")]
    assert train.main(tiny_run_args(tiny_world, tmp_path, *args)) == 0
    after = read_checkpoint(run / "last.ckpt")
    assert after["epoch"] == 2
    assert after["global_step"] == before["global_step"] * 3 // 2  # one more epoch of the same batches
    changed = [k for k, v in after["state_dict"].items() if not torch.equal(v, before["state_dict"][k])]
    assert changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_published_checkpoint_continues_its_epoch_count(tiny_world, reference_checkpoint, tmp_path):
    path = tmp_path / "published.pth"
    torch.save(reference_checkpoint, path)
    last_epoch = reference_checkpoint["last_epoch"]
    args = ["--n_epochs", str(last_epoch + 2), "--checkpoint", str(path), "--name", "continued"]
    assert train.main(tiny_run_args(tiny_world, tmp_path, *args)) == 0
    ckpt = read_checkpoint(tmp_path / "continued" / "last.ckpt")
    assert ckpt["hyper_parameters"]["epoch_offset"] == last_epoch + 1
    assert ckpt["epoch"] == 0


def test_a_batch_larger_than_the_split_is_refused(tiny_world, tmp_path):
    args = tiny_run_args(tiny_world, tmp_path, "--no_pretrained", "--n_epochs", "1")
    with pytest.raises(UsageError, match="--batch_size 64: the training split has 24 pairs"):
        train.main([*args, "--batch_size", "64"])


def test_train_script_exits_with_one_line_for_a_missing_root(tmp_path):
    result = run_script("train.py", "--CVUSA", "--data_root_cvusa", str(tmp_path / "nowhere"), "--gpu", "-1",
                        "--no_pretrained")
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_bf16_mixed_trains_and_tests_on_the_cpu(tiny_world, tmp_path, capsys):
    # Smaller images than the other runs: without bf16 instructions the CPU computes bf16 slowly.
    small = ["--sat_size_h", "32", "--sat_size_w", "32", "--grd_size_h", "16", "--grd_size_w", "64",
             "--precision", "bf16-mixed"]
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--name", "bf16", *small)
    assert train.main(args) == 0
    warned = "this CPU has no bf16 instructions" in capsys.readouterr().err
    assert warned != torch.ops.mkldnn._is_mkldnn_bf16_supported()
    weights = read_checkpoint(tmp_path / "bf16" / "last.ckpt")["state_dict"]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())

    descriptors = tmp_path / "descriptors.npz"
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(tmp_path / "bf16" / "last.ckpt"), "--name", "t",
                         "--save_descriptors", str(descriptors), *small)
    assert test_script.main(args) == 0
    assert json.loads((tmp_path / "t" / "results.json").read_text())["num"] == 13
    with np.load(descriptors) as saved:
        for view in ("sat", "grd"):
            assert saved[view].shape == (13, 2048)
            assert np.allclose(np.linalg.norm(saved[view], axis=1), 1.0, atol=1e-2)


def test_gpu_levers_reach_the_module():
    opt = train.build_parser().parse_args(["--CVUSA", "--compile", "--channels_last"])
    assert train.module_options(opt)["compile_net"] and train.module_options(opt)["channels_last"]
    assert not train.module_options(train.build_parser().parse_args(["--CVUSA"]))["compile_net"]
