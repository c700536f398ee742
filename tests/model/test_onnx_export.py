"""The ONNX graphs against PyTorch: the same descriptors, the same ranking, with what a caller needs in the file."""

import sys

import numpy as np
import onnx
import pytest
import torch

from model.network import CrossViewNet
from model.onnx_export import NORMALISATION, OPSET, OnnxUnavailable, export_onnx
from utils.checkpoint import ModelConfig
from utils.onnx_runtime import OnnxRuntimeError, load_branches

CONFIGS = {
    "paper's, FC": ModelConfig((64, 64), (32, 128), sa_num=4),
    "no FC": ModelConfig((64, 64), (32, 128), use_fc=False),
    "FoV 90": ModelConfig((64, 64), (32, 128), sa_num=2, fov=90.0),
    "MobileNetV3": ModelConfig((64, 64), (32, 128), sa_num=2, backbone="mobilenet_v3_large"),
}


def trained_looking(config: ModelConfig) -> CrossViewNet:
    """A network whose batch norms hold statistics other than their initial ones, as trained weights do."""
    torch.manual_seed(0)
    net = CrossViewNet.from_config(config)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_both_graphs_give_pytorchs_descriptors_at_any_batch_size(name, tmp_path):
    config = CONFIGS[name]
    net = trained_looking(config)
    written = export_onnx(net.train(), config, tmp_path / "graphs", source="a test")  # exported as in evaluation
    assert not net.training
    assert sorted(path.name for path in (tmp_path / "graphs").iterdir()) == ["aerial.onnx", "ground.onnx"]
    aerial, ground = load_branches(tmp_path / "graphs")
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):
        sat = torch.rand(batch, 3, *config.sat_size, generator=generator) * 2 - 1
        grd = torch.rand(batch, 3, *config.net_grd_size, generator=generator) * 2 - 1
        with torch.no_grad():
            expected_sat, expected_grd = net.embed_sat(sat), net.embed_grd(grd)
        assert np.abs(aerial(sat.numpy()) - expected_sat.numpy()).max() < 1e-4
        assert np.abs(ground(grd.numpy()) - expected_grd.numpy()).max() < 1e-4
    assert (aerial.image_size, ground.image_size) == (config.sat_size, config.net_grd_size)
    metadata = {entry.key: entry.value for entry in onnx.load(written["grd"]).metadata_props}
    assert metadata["view"] == "ground" and metadata["normalisation"] == NORMALISATION
    assert metadata["field_of_view_deg"] == f"{config.fov:g}" and metadata["panorama_size"] == "32x128"
    assert int(metadata["descriptor_size"]) == net.descriptor_size and metadata["opset"] == str(OPSET)
    assert onnx.load(written["sat"]).opset_import[0].version == OPSET


def test_the_graphs_rank_a_gallery_as_pytorch_does(tmp_path):
    config = CONFIGS["paper's, FC"]
    net = trained_looking(config)
    export_onnx(net, config, tmp_path, source="a test")
    aerial, ground = load_branches(tmp_path)
    generator = torch.Generator().manual_seed(2)
    tiles = torch.rand(40, 3, 64, 64, generator=generator) * 2 - 1
    panoramas = torch.rand(12, 3, 32, 128, generator=generator) * 2 - 1
    with torch.no_grad():
        torch_order = np.argsort(-(net.embed_grd(panoramas) @ net.embed_sat(tiles).T).numpy(), axis=1, kind="stable")
    onnx_order = np.argsort(-(ground(panoramas.numpy()) @ aerial(tiles.numpy()).T), axis=1, kind="stable")
    assert np.array_equal(torch_order[:, :10], onnx_order[:, :10])


def test_a_missing_onnxruntime_or_folder_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(OnnxRuntimeError, match=r"no aerial.onnx or ground.onnx there; expected the folder written by "
                                               r"python export.py CHECKPOINT DIR --format onnx"):
        load_branches(tmp_path)
    export_onnx(trained_looking(CONFIGS["no FC"]), CONFIGS["no FC"], tmp_path, source="a test")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(OnnxRuntimeError, match="needs onnxruntime: pip install onnxruntime"):
        load_branches(tmp_path)


def test_an_export_without_the_onnx_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(OnnxUnavailable, match="needs the onnx package: pip install onnx onnxruntime"):
        export_onnx(trained_looking(CONFIGS["no FC"]), CONFIGS["no FC"], tmp_path, source="a test")
    assert list(tmp_path.iterdir()) == []
