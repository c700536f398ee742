import json
import math
import shutil

import numpy as np
import pytest
import torch

import model.loss
import test as test_script
import train
import visualize
from dataset.cvact import CVACT
from dataset.negatives import WithinDistance
from engine.build import KNOWN_ERRORS, build_module, cpu_has_fast_bf16
from engine.options import UsageError, build_parser
from tests.helpers import SMALL_SIZES, TINY_SIZES, run_entry_point, run_script, tiny_run_args
from tests.utils.test_figures import assert_readable_png
from utils.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)


def test_a_run_folder_holds_options_log_and_checkpoints(tiny_trained_run):
    names = {p.name for p in tiny_trained_run.iterdir()}
    assert {"options.json", "log.txt", "best.ckpt", "last.ckpt", "summary.json", "tensorboard"} <= names
    options = json.loads((tiny_trained_run / "options.json").read_text())
    assert options["n_epochs"] == 2 and options["sa_num"] == 8
    log = (tiny_trained_run / "log.txt").read_text()
    assert "Options" in log
    validated = [float(log.split(f"epoch {epoch} validation, 13 pairs: p2s R@1 ")[1].split()[0]) for epoch in (0, 1)]
    summary = json.loads((tiny_trained_run / "summary.json").read_text())
    assert summary["val/p2s_r@1"] == pytest.approx(max(validated), abs=0.005)  # the log prints two decimals
    best_epoch = validated.index(max(validated))  # a later epoch replaces best.ckpt only when strictly better
    assert read_checkpoint(tiny_trained_run / "best.ckpt")["epoch"] == best_epoch
    assert summary["best_checkpoint"] == str(tiny_trained_run / "best.ckpt")
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
                        "--no_pretrained", cwd=tmp_path)
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_bf16_mixed_trains_and_tests_on_the_cpu(tiny_world, tmp_path, capsys):
    # Smaller images than the other runs: without bf16 instructions the CPU computes bf16 slowly.
    small = ["--sat_size_h", "16", "--sat_size_w", "16", "--grd_size_h", "8", "--grd_size_w", "32",
             "--precision", "bf16-mixed"]
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--name", "bf16", *small)
    assert train.main(args) == 0
    warned = "this CPU has no bf16 instructions" in capsys.readouterr().err
    assert warned != cpu_has_fast_bf16()
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
    opt = build_parser().parse_args(["--CVUSA", "--compile", "--channels_last", *TINY_SIZES])
    module = build_module(opt, pretrained=False)
    assert module.hparams.compile_net and module.hparams.channels_last
    opt = build_parser().parse_args(["--CVUSA", *TINY_SIZES])
    assert not build_module(opt, pretrained=False).hparams.compile_net


def published_checkpoint(reference_checkpoint, path, last_epoch, optimizer_dict=None):
    torch.save({**reference_checkpoint, "last_epoch": last_epoch, "optimizer_dict": optimizer_dict or {}}, path)
    return path


def test_a_continued_published_checkpoint_keeps_its_schedule_through_a_resume(tiny_world, reference_checkpoint,
                                                                               tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the resume passes no --results_dir: nothing may land in the repository
    path = published_checkpoint(reference_checkpoint, tmp_path / "published.pth", last_epoch=25)
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(path), "--n_epochs", "27", "--name", "run")
    assert train.main(args) == 0
    run = tmp_path / "run"
    assert train.main(["--resume", str(run), "--n_epochs", "28"]) == 0
    log = (run / "log.txt").read_text()
    for epoch in (26, 27):
        assert f"epoch {epoch} training: hard-negative ratio 0.1\n" in log
        assert f"epoch {epoch} validation, 13 pairs: p2s R@1 " in log
    assert "epoch 28" not in log and "ratio 1\n" not in log
    ckpt = read_checkpoint(run / "last.ckpt")
    assert (ckpt["hyper_parameters"]["epoch_offset"], ckpt["epoch"]) == (26, 1)
    assert ckpt["options"]["n_epochs"] == 28 and json.loads((run / "options.json").read_text())["n_epochs"] == 28
    assert sorted(p.name for p in tmp_path.iterdir()) == ["published.pth", "run"]


def test_resume_needs_no_flag_and_refuses_one_that_contradicts_the_run(tiny_trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for flags, message in [
        (["--sa_num", "4"], "--sa_num 4: the run of .*last.ckpt was configured with --sa_num 8;"),
        (["--sat_size_w", "128"], "--sat_size_w 128: .* was configured with --sat_size_w 64;"),
        (["--no_fc"], "--no_fc: .* was configured with no --no_fc;"),
        (["--lr", "0.5"], "--lr 0.5: .* was configured with --lr 0.0001;"),
        (["--CVACT"], "--CVACT: .* was configured with no --CVACT;"),
    ]:
        with pytest.raises(UsageError, match=message):
            train.main(["--resume", str(tiny_trained_run), "--n_epochs", "3", *flags])
    with pytest.raises(UsageError, match="--n_epochs 2: the checkpoint already trained 2 epochs; --n_epochs is the "
                                         "total"):
        train.main(["--resume", str(tiny_trained_run)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("stored_best", "replaced"), [(100.0, False), (-1.0, True)])
def test_a_moved_run_keeps_its_best_score_when_resumed(tiny_trained_run, tmp_path, stored_best, replaced):
    run = tmp_path / "moved"
    shutil.copytree(tiny_trained_run, run)
    ckpt = read_checkpoint(run / "last.ckpt")
    (state,) = [s for s in ckpt["callbacks"].values() if s.get("monitor") == "val/p2s_r@1"]
    state["best_model_score"] = state["kth_value"] = torch.tensor(stored_best)  # as if an epoch had scored it
    state["best_k_models"] = {path: torch.tensor(stored_best) for path in state["best_k_models"]}
    torch.save(ckpt, run / "last.ckpt")
    best_before = read_checkpoint(run / "best.ckpt")["epoch"]
    assert train.main(["--resume", str(run), "--n_epochs", "3"]) == 0
    assert read_checkpoint(run / "best.ckpt")["epoch"] == (2 if replaced else best_before)
    after = read_checkpoint(run / "last.ckpt")
    (state,) = [s for s in after["callbacks"].values() if s.get("monitor") == "val/p2s_r@1"]
    assert state["best_model_path"] == str(run / "best.ckpt")
    assert (float(state["best_model_score"]) == stored_best) != replaced


def adam_state_after_one_step(reference_checkpoint):
    from model.network import CrossViewNet

    net = CrossViewNet((64, 64), (32, 128))
    net.load_state_dict(reference_checkpoint["retrieval_model_dict"])
    optimizer = torch.optim.Adam(net.parameters(), lr=0.5, betas=(0.9, 0.99))
    sat, grd = net(torch.randn(4, 3, 64, 64), torch.randn(4, 3, 32, 128))
    (sat @ grd.T).diagonal().sum().backward()
    optimizer.step()
    return optimizer.state_dict()


@pytest.mark.parametrize("reset", [False, True])
def test_a_published_adam_state_is_continued_with_the_command_lines_lr_and_betas(tiny_world, reference_checkpoint,
                                                                                  tmp_path, reset):
    stored = adam_state_after_one_step(reference_checkpoint)
    path = published_checkpoint(reference_checkpoint, tmp_path / "published.pth", 41, stored)
    extra = ["--reset_optimizer"] if reset else []
    args = tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(path), "--n_epochs", "43", "--name", "run", *extra)
    assert train.main(args) == 0
    ckpt = read_checkpoint(tmp_path / "run" / "last.ckpt")
    (optimizer,) = ckpt["optimizer_states"]
    steps = ckpt["global_step"]
    assert steps == 3  # 24 pairs in batches of 8
    assert {float(s["step"]) for s in optimizer["state"].values()} == {float(steps if reset else steps + 1)}
    assert [(g["lr"], g["betas"]) for g in optimizer["param_groups"]] == [(1e-4, (0.5, 0.999))]
    assert ckpt["hyper_parameters"]["epoch_offset"] == 42
    if not reset:  # the first moment of a parameter the step moved carries the stored one on
        first = optimizer["state"][0]["exp_avg"]
        assert not torch.equal(first, torch.zeros_like(first))
    log = (tmp_path / "run" / "log.txt").read_text()
    assert ("a fresh Adam" in log) == reset and ("its Adam state with --lr 0.0001" in log) != reset


def test_a_loss_that_turns_nan_exits_2_and_last_ckpt_keeps_the_last_good_state(tiny_world, tmp_path, monkeypatch,
                                                                                capsys):
    common = tiny_run_args(tiny_world, tmp_path, "--no_pretrained", *SMALL_SIZES)
    assert train.main([*common, "--n_epochs", "1", "--name", "clean"]) == 0
    calls = []
    real_forward = model.loss.SoftMarginTripletLoss.forward

    def loss_turning_nan(self, *args, **kwargs):  # the second batch of the second epoch (3 batches an epoch)
        calls.append(None)
        loss = real_forward(self, *args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(model.loss.SoftMarginTripletLoss, "forward", loss_turning_nan)
    assert run_entry_point(train.main, KNOWN_ERRORS, [*common, "--n_epochs", "2", "--name", "nan"], monkeypatch) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("error: loss is nan at epoch 1, batch 1; the weights were not updated")
    saved, clean = read_checkpoint(tmp_path / "nan" / "last.ckpt"), read_checkpoint(tmp_path / "clean" / "last.ckpt")
    assert saved["epoch"] == 0 and saved["state_dict"].keys() == clean["state_dict"].keys()
    for key, value in clean["state_dict"].items():  # batch-norm statistics included
        assert torch.equal(saved["state_dict"][key], value), key


def test_cvact_training_hands_each_batchs_25_m_mask_to_the_loss(tiny_world, tmp_path, monkeypatch):
    positions, masks = [], []
    real_rule, real_forward = WithinDistance.__call__, model.loss.SoftMarginTripletLoss.forward

    def recording_rule(self, labels):
        positions.append(labels["utm"])
        return real_rule(self, labels)

    def recording_loss(self, sat, grd, not_negatives=None, *args, **kwargs):
        masks.append(not_negatives)
        return real_forward(self, sat, grd, not_negatives, *args, **kwargs)

    monkeypatch.setattr(WithinDistance, "__call__", recording_rule)
    monkeypatch.setattr(model.loss.SoftMarginTripletLoss, "forward", recording_loss)
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", dataset="CVACT")
    assert train.main(args) == 0
    train_split = CVACT(tiny_world / "CVACT", "train", (64, 64), (32, 128))
    assert [len(utm) for utm in positions] == [8, 8, 8]
    seen = torch.cat(positions)
    assert seen.dtype == torch.float64
    # every training pair once, each with its own position
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, train_split.utm.tolist()))
    for utm, mask in zip(positions, masks, strict=True):
        expected = [[math.dist(a, b) < 25.0 for b in utm.tolist()] for a in utm.tolist()]
        assert mask.tolist() == expected


def test_the_model_without_fc_layers_trains_tests_and_draws(tiny_world, tmp_path):
    assert train.main(tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--no_fc",
                                    "--name", "no_fc")) == 0
    checkpoint = tmp_path / "no_fc" / "best.ckpt"
    assert read_checkpoint(checkpoint)["hyper_parameters"]["use_fc"] is False
    saved = tmp_path / "descriptors.npz"
    args = ["--CVUSA", "--data_root_cvusa", str(tiny_world / "CVUSA"), "--gpu", "-1", "--num_workers", "0",
            "--results_dir", str(tmp_path), "--checkpoint", str(checkpoint), "--save_descriptors", str(saved)]
    assert test_script.main([*args, "--name", "t"]) == 0  # the checkpoint says it has no FC layers
    results = json.loads((tmp_path / "t" / "results.json").read_text())
    assert results["no_fc"] is True and results["sat_size"] == [64, 64]
    with np.load(saved) as arrays:
        assert arrays["sat"].shape == (13, 256) and arrays["grd"].shape == (13, 256)
    assert_readable_png(tmp_path / "t" / "recall_curve.png")
    assert_readable_png(tmp_path / "t" / "retrievals.png", min_bytes=20_000)
    assert visualize.main([*args[:5], "--checkpoint", str(checkpoint), "--num_samples", "1",
                           "--out", str(tmp_path / "maps.png")]) == 0
    assert_readable_png(tmp_path / "maps.png")


def test_ddp_training_over_two_cpu_processes_writes_one_run_on_the_whole_gallery(tiny_world, tmp_path):
    # with the negatives of both processes' batches (model/test_lightning.py checks that loss against one batch)
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--cpu_procs", "2",
                         "--global_negatives", "--name", "ddp", *SMALL_SIZES)
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    run = tmp_path / "ddp"
    log = (run / "log.txt").read_text()
    assert log.count("epoch 0 validation, 13 pairs: ") == 1 and log.count("Options") == 1
    assert log.count("epoch 0 training: hard-negative ratio 1\n") == 1
    assert {"options.json", "best.ckpt", "last.ckpt", "summary.json"} <= {p.name for p in run.iterdir()}
    validated = float(log.split("epoch 0 validation, 13 pairs: p2s R@1 ")[1].split()[0])
    assert test_script.main(tiny_run_args(tiny_world, tmp_path / "test", "--checkpoint", str(run / "best.ckpt"),
                                          "--name", "t", *SMALL_SIZES)) == 0
    tested = json.loads((tmp_path / "test" / "t" / "results.json").read_text())["p2s"]["r@1"]
    assert tested == pytest.approx(validated, abs=0.005)  # the log prints two decimals


def test_a_checkpoint_outside_its_run_folder_continues_in_a_new_one(tiny_world, tiny_trained_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tiny_trained_run / "last.ckpt", elsewhere / "copied.ckpt")
    args = ["--checkpoint", str(elsewhere / "copied.ckpt"), "--n_epochs", "3", "--results_dir", str(tmp_path / "runs"),
            "--name", "continued"]
    assert train.main(args) == 0  # the copied checkpoint carries the run's options
    run = tmp_path / "runs" / "continued"
    assert read_checkpoint(run / "last.ckpt")["epoch"] == 2
    assert {"best.ckpt", "last.ckpt", "options.json"} <= {p.name for p in run.iterdir()}
    assert read_checkpoint(run / "best.ckpt")["epoch"] == 2  # its best starts afresh in the new folder
    assert [p.name for p in elsewhere.iterdir()] == ["copied.ckpt"]
    assert "continuing " + str(elsewhere / "copied.ckpt") + " after 2 epochs in a new folder" in (
        run / "log.txt").read_text()


def test_save_step_debug_and_deterministic_reach_the_trainer(tiny_world, tmp_path, monkeypatch):
    built = []

    def recording_trainer(*args, **kwargs):
        built.append(real_trainer(*args, **kwargs))
        return built[-1]

    real_trainer = train.build_trainer
    monkeypatch.setattr(train, "build_trainer", recording_trainer)
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "2", "--no_pretrained", "--save_step", "1", "--debug",
                         "--deterministic", "--name", "run")
    assert train.main(args) == 0
    (trainer,) = built
    assert trainer.limit_train_batches == 42 and trainer.num_training_batches == 3  # 42 at most, 3 in the split
    assert torch.are_deterministic_algorithms_enabled()
    assert {"epoch000.ckpt", "epoch001.ckpt"} <= {p.name for p in (tmp_path / "run").iterdir()}


def test_max_time_stops_training_and_a_log_gets_lines_instead_of_a_bar(tiny_world, tmp_path):
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "500", "--no_pretrained", "--name", "run",
                         "--max_time", "0.05", "--precision", "auto", *SMALL_SIZES)
    result = run_script("train.py", *args, cwd=tmp_path)  # stdout is a pipe, as with `> log`
    assert result.returncode == 0, result.stderr[-2000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    stopped = [line for line in log.splitlines() if "stopped by --max_time 0.05 after" in line]
    assert len(stopped) == 1 and int(stopped[0].split(" after ")[1].split()[0]) < 500, log[-2000:]
    assert "\r" not in result.stdout + result.stderr
    assert "epoch 0 training: batch 3/3, loss " in result.stdout and "epoch 0 validation: batch 3/3" in result.stdout
    chosen = "bf16-mixed" if cpu_has_fast_bf16() else "32"
    assert f"--precision auto: {chosen}, since this CPU " in log
    assert json.loads((tmp_path / "run" / "options.json").read_text())["precision"] == chosen


NOISE = ("GPU available", "TPU available", "Tip:", "Trainable params", "is deprecated", "`Trainer.fit` stopped",
         "Options")


def test_a_plain_run_prints_its_folder_epochs_and_figures_and_logs_the_rest(tiny_world, tmp_path):
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--name", "quiet", *SMALL_SIZES)
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    printed = result.stdout
    assert printed.startswith(f"run folder: {tmp_path / 'quiet'}\n")
    assert "epoch 0 validation, 13 pairs: p2s R@1 " in printed and "best val/p2s_r@1: " in printed
    assert not [noise for noise in NOISE if noise in printed]
    log = (tmp_path / "quiet" / "log.txt").read_text()
    assert all(noise in log for noise in ("GPU available", "Trainable params", "`Trainer.fit` stopped", "Options"))

    debug = run_script("train.py", *args, "--name", "loud", "--debug", cwd=tmp_path)
    assert debug.returncode == 0, debug.stderr[-2000:]
    assert "Options" in debug.stdout and "GPU available" in debug.stdout + debug.stderr


def test_training_with_info_nce_learns_its_temperature_and_tests_like_any_run(tiny_world, tmp_path):
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--loss", "infonce", "--name",
                         "infonce", *SMALL_SIZES)
    assert train.main(args) == 0
    saved = read_checkpoint(tmp_path / "infonce" / "last.ckpt")
    assert saved["hyper_parameters"]["loss"] == "infonce"
    scale = float(saved["state_dict"]["criterion.logit_scale"])
    assert scale != pytest.approx(math.log(1 / 0.07), abs=1e-9)  # it moved with the network
    assert len(saved["optimizer_states"][0]["param_groups"]) == 2  # the temperature in a group of its own
    assert test_script.main(tiny_run_args(tiny_world, tmp_path, "--checkpoint", str(tmp_path / "infonce" / "best.ckpt"),
                                          "--name", "tested", *SMALL_SIZES)) == 0
    with pytest.raises(UsageError, match="--loss arcface: expected one of triplet, infonce"):
        train.main(tiny_run_args(tiny_world, tmp_path, "--n_epochs", "1", "--no_pretrained", "--loss", "arcface"))
