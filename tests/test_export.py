"""export.py: this project's checkpoints in the authors' published format."""

import json

import numpy as np
import pytest
import torch

from engine.options import UsageError
from export import main as export_main
from model.network import CrossViewNet
from utils.checkpoint import CheckpointError, load_weights, read_checkpoint
from utils.onnx_runtime import load_branches

SAT, GRD = (64, 64), (32, 128)


def test_export_writes_the_authors_format_with_the_authors_keys(tiny_trained_run, reference_dir, tmp_path, capsys):
    out = tmp_path / "exported" / "cvusa.pth"
    assert export_main([str(tiny_trained_run / "best.ckpt"), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    exported = torch.load(out, map_location="cpu", weights_only=False)
    assert list(exported) == ["last_epoch", "best_acc", "count", "retrieval_model_dict", "optimizer_dict"]
    manifest = json.loads((reference_dir / "reference_state_small.json").read_text())["keys"]
    assert {key: (list(value.shape), str(value.dtype).removeprefix("torch."))
            for key, value in exported["retrieval_model_dict"].items()} == {k: (s, d) for k, s, d in manifest}

    source = read_checkpoint(tiny_trained_run / "best.ckpt")
    summary = json.loads((tiny_trained_run / "summary.json").read_text())
    assert exported["last_epoch"] == source["epoch"] and exported["count"] == source["global_step"] > 0
    assert exported["best_acc"] == pytest.approx(summary["val/p2s_r@1"])

    net = CrossViewNet(SAT, GRD).eval()  # what the authors' code does with the file
    net.load_state_dict(exported["retrieval_model_dict"], strict=True)
    torch.optim.Adam(net.parameters()).load_state_dict(exported["optimizer_dict"])
    trained = CrossViewNet(SAT, GRD).eval()
    load_weights(trained, tiny_trained_run / "best.ckpt")
    images = torch.rand(3, 3, *SAT) * 2 - 1, torch.rand(3, 3, *GRD) * 2 - 1
    with torch.no_grad():
        for exported_out, trained_out in zip(net(*images), trained(*images), strict=True):
            assert torch.equal(exported_out, trained_out)
    assert [p.name for p in out.parent.iterdir()] == ["cvusa.pth"]


def test_export_of_an_unreadable_file_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.txt cannot be read"):
        export_main([str(tmp_path / "notes.txt"), str(tmp_path / "out.pth")])
    assert not (tmp_path / "out.pth").exists()


def test_onnx_export_of_a_run_and_of_published_weights_gives_their_descriptors(tiny_trained_run, reference_checkpoint,
                                                                              tmp_path, capsys):
    published = tmp_path / "published.pth"
    torch.save(reference_checkpoint, published)
    generator = torch.Generator().manual_seed(0)
    sat, grd = torch.rand(3, 3, *SAT, generator=generator) * 2 - 1, torch.rand(3, 3, *GRD, generator=generator) * 2 - 1
    sizes = ["--sat_size_h", "64", "--sat_size_w", "64", "--grd_size_h", "32", "--grd_size_w", "128"]
    for checkpoint, flags in ((tiny_trained_run / "best.ckpt", []), (published, sizes)):
        out = tmp_path / checkpoint.stem
        assert export_main([str(checkpoint), str(out), "--format", "onnx", *flags]) == 0
        printed = capsys.readouterr().out
        assert f"{out / 'aerial.onnx'}: aerial branch, images (batch, 3, 64, 64) in [-1, 1] -> descriptors (batch, " \
               "2048), opset" in printed
        net = CrossViewNet(SAT, GRD).eval()
        load_weights(net, checkpoint)
        aerial, ground = load_branches(out)
        with torch.no_grad():
            assert np.abs(aerial(sat.numpy()) - net.embed_sat(sat).numpy()).max() < 1e-4
            assert np.abs(ground(grd.numpy()) - net.embed_grd(grd).numpy()).max() < 1e-4
        assert aerial.metadata["source"] == str(checkpoint.resolve())


def test_the_published_format_takes_no_model_flag(tiny_trained_run, tmp_path):
    with pytest.raises(UsageError, match="--sa_num: the published format copies the checkpoint's tensors"):
        export_main([str(tiny_trained_run / "best.ckpt"), str(tmp_path / "out.pth"), "--sa_num", "4"])
