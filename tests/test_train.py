import json
import shutil

import pytest
import torch

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
    assert "Options" in (tiny_trained_run / "log.txt").read_text()
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
