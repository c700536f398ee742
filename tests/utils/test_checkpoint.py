
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


def test_export_counts_epochs_on_from_a_continued_published_checkpoint(tmp_path):
    ckpt = {"epoch": 2, "global_step": 30, "state_dict": {f"net.{k}": v for k, v in
                                                          CrossViewNet(SAT, GRD).state_dict().items()},
            "hyper_parameters": {"sat_size": SAT, "grd_size": GRD, "sa_num": 8, "use_fc": True, "epoch_offset": 26}}
    published = to_published(ckpt)
    assert (published["last_epoch"], published["best_acc"], published["count"]) == (28, 0.0, 30)


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
