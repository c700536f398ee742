import json

import pytest
import torch

from model.network import CrossViewNet
from utils.checkpoint import (
    CheckpointError,
    ModelConfig,
    load_weights,
    model_config,
    model_state,
    read_checkpoint,
    to_published,
)
from utils.checkpoint import main as checkpoint_main

SAT, GRD = (64, 64), (32, 128)


def expected_state(reference_checkpoint):
    return reference_checkpoint["retrieval_model_dict"]


@pytest.mark.parametrize("layout", ["published", "data_parallel", "lightning", "bare"])
def test_every_accepted_layout_loads_the_same_weights(reference_checkpoint, layout, tmp_path):
    state = expected_state(reference_checkpoint)
    ckpt = {
        "published": reference_checkpoint,
        "data_parallel": {**reference_checkpoint,
                          "retrieval_model_dict": {f"module.{k}": v for k, v in state.items()}},
        "lightning": {"epoch": 3, "state_dict": {f"net.{k}": v for k, v in state.items()}},
        "bare": state,
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    net = CrossViewNet(SAT, GRD)
    load_weights(net, path)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sa_num": 4}, r"sa1\.b1 has shape \(1, 32, 8\) but the model expects \(1, 32, 4\); check --sa_num"),
        ({"sat_size": (128, 128)}, r"sa1\.b1 has shape \(1, 32, 8\) .* \(1, 128, 8\); check --sat_size_h/--sat_size_w"),
        ({"grd_size": (64, 256)}, r"sa2\.b1 .*check --grd_size_h/--grd_size_w"),
        ({"use_fc": False}, r"has spatial-aware FC layers .* drop --no_fc"),
    ],
)
def test_a_mismatch_names_the_tensor_the_shapes_and_the_flag(reference_checkpoint, tmp_path, kwargs, pattern):
    path = tmp_path / "ckpt.pth"
    torch.save(reference_checkpoint, path)
    net = CrossViewNet(**{"sat_size": SAT, "grd_size": GRD, **kwargs})
    with pytest.raises(CheckpointError, match=pattern):
        load_weights(net, path)


def test_a_no_fc_checkpoint_asks_for_no_fc(tmp_path):
    path = tmp_path / "no_fc.pth"
    torch.save({"retrieval_model_dict": CrossViewNet(SAT, GRD, use_fc=False).state_dict()}, path)
    with pytest.raises(CheckpointError, match="pass --no_fc"):
        load_weights(CrossViewNet(SAT, GRD), path)
    load_weights(CrossViewNet(SAT, GRD, use_fc=False), path)


def test_files_that_are_not_checkpoints_get_one_line_errors(reference_checkpoint, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    truncated = tmp_path / "truncated.pth"
    torch.save(reference_checkpoint, truncated)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    for path, pattern in [(tmp_path / "absent.pth", "does not exist"), (text, "cannot be read"),
                          (truncated, "cannot be read"), (listing, "expected a dictionary")]:
        with pytest.raises(CheckpointError, match=pattern) as info:
            read_checkpoint(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_dictionary_without_weights_is_refused():
    with pytest.raises(CheckpointError, match="no network weights"):
        model_state({"epoch": 1, "optimizer_dict": {}})


def test_export_writes_the_authors_format_with_the_authors_keys(tiny_trained_run, reference_dir, tmp_path, capsys):
    out = tmp_path / "exported" / "cvusa.pth"
    assert checkpoint_main(["export", str(tiny_trained_run / "best.ckpt"), str(out)]) == 0
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


def test_export_counts_epochs_on_from_a_continued_published_checkpoint(tmp_path):
    ckpt = {"epoch": 2, "global_step": 30, "state_dict": {f"net.{k}": v for k, v in
                                                          CrossViewNet(SAT, GRD).state_dict().items()},
            "hyper_parameters": {"sat_size": SAT, "grd_size": GRD, "sa_num": 8, "use_fc": True, "epoch_offset": 26}}
    published = to_published(ckpt)
    assert (published["last_epoch"], published["best_acc"], published["count"]) == (28, 0.0, 30)


def test_export_of_an_unreadable_file_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.txt cannot be read"):
        checkpoint_main(["export", str(tmp_path / "notes.txt"), str(tmp_path / "out.pth")])
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, ModelConfig()),
    ({"sa_num": 4}, ModelConfig(sa_num=4)),
    ({"use_fc": False}, ModelConfig(use_fc=False)),
])
def test_published_weights_tell_their_maps_and_fc_layers_and_default_to_the_papers_sizes(kwargs, expected):
    state = CrossViewNet(SAT, GRD, **kwargs).state_dict()
    assert model_config({"retrieval_model_dict": state}) == (expected, False)
    assert model_config(state) == (expected, False)


def test_this_projects_checkpoints_state_their_configuration():
    hyper_parameters = {"sat_size": [32, 48], "grd_size": [16, 64], "sa_num": 2, "use_fc": False}
    ckpt = {"state_dict": {}, "hyper_parameters": hyper_parameters}
    assert model_config(ckpt) == (ModelConfig((32, 48), (16, 64), 2, False), True)  # before backbones had names
    ckpt["hyper_parameters"] = {**hyper_parameters, "backbone": "resnet18", "fov": 90.0}
    assert model_config(ckpt) == (ModelConfig((32, 48), (16, 64), 2, False, 90.0, "resnet18"), True)
