import numpy as np
import pytest
import torch
import torchvision.models._api as torchvision_api

from model.backbone import BACKBONES, PretrainedWeightsUnavailable, backbone_of_state, build_backbone, feature_grid
from model.head import SpatialAwareHead
from model.loss import soft_margin_triplet_loss
from model.network import CrossViewNet, count_parameters
from utils.checkpoint import ModelConfig, load_weights

SAT, GRD = (64, 64), (32, 128)


def test_published_checkpoint_reproduces_reference_descriptors(reference_dir, reference_checkpoint, tmp_path):
    path = tmp_path / "published.pth"
    torch.save(reference_checkpoint, path)
    net = CrossViewNet(SAT, GRD, sa_num=8).eval()
    load_weights(net, path)
    ref = np.load(reference_dir / "reference_model_small.npz")
    with torch.no_grad():
        sat, grd = net(torch.from_numpy(ref["sat"]), torch.from_numpy(ref["grd"]))
    np.testing.assert_allclose(sat.numpy(), ref["sat_desc"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(grd.numpy(), ref["grd_desc"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("use_fc", "size"), [(True, 2048), (False, 256)])
def test_descriptors_are_normalised_with_the_variant_size(use_fc, size):
    net = CrossViewNet((48, 80), (32, 96), sa_num=8, use_fc=use_fc).eval()
    with torch.no_grad():
        sat, grd = net(torch.randn(3, 3, 48, 80), torch.randn(3, 3, 32, 96))
    assert sat.shape == grd.shape == (3, size) == (3, net.descriptor_size)
    torch.testing.assert_close(sat.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(grd.norm(dim=1), torch.ones(3))


def test_head_has_the_authors_shapes_and_initialisation():
    head = SpatialAwareHead(num_positions=64, num_maps=8)
    assert head.w1.shape == (64, 32, 8) and head.b1.shape == (1, 32, 8)
    assert head.w2.shape == (32, 64, 8) and head.b2.shape == (1, 64, 8)
    assert torch.all(head.b1 == 0.1) and torch.all(head.b2 == 0.1)
    assert abs(head.w1.std().item() - 0.005) < 0.0005
    assert count_parameters(SpatialAwareHead(64, 8, use_fc=False)) == 0


def test_head_matches_a_loop_over_attention_maps():
    head = SpatialAwareHead(num_positions=12, num_maps=3)
    features = torch.randn(2, 5, 12)
    pooled = features.max(dim=1).values
    expected = []
    for b in range(2):
        columns = []
        for k in range(3):
            hidden = pooled[b] @ head.w1[:, :, k] + head.b1[0, :, k]
            attention = hidden @ head.w2[:, :, k] + head.b2[0, :, k]
            columns.append(features[b] @ attention)
        expected.append(torch.stack(columns, dim=1).flatten())
    expected = torch.nn.functional.normalize(torch.stack(expected), dim=1)
    torch.testing.assert_close(head(features), expected)


def test_attention_maps_have_the_feature_map_shape():
    net = CrossViewNet(SAT, GRD, sa_num=4).eval()
    sat_maps, grd_maps = net.attention_maps(torch.randn(2, 3, *SAT), torch.randn(2, 3, *GRD))
    assert sat_maps.shape == (2, 4, 8, 8) and grd_maps.shape == (2, 4, 4, 16)
    no_fc = CrossViewNet(SAT, GRD, use_fc=False).eval()
    sat_maps, _ = no_fc.attention_maps(torch.randn(2, 3, *SAT), torch.randn(2, 3, *GRD))
    assert sat_maps.shape == (2, 1, 8, 8)


@pytest.mark.parametrize("use_fc", [True, False])
def test_every_parameter_gets_a_gradient_and_training_lowers_the_loss(use_fc):
    torch.manual_seed(0)
    net = CrossViewNet(SAT, GRD, use_fc=use_fc)
    sat, grd = torch.randn(6, 3, *SAT), torch.randn(6, 3, *GRD)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        optimiser.zero_grad()
        loss = soft_margin_triplet_loss(*net(sat, grd))
        loss.backward()
        if not losses:
            for name, param in net.named_parameters():
                assert param.grad is not None and param.grad.abs().sum() > 0, name
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_parameter_counts_at_the_papers_sizes():
    # the counts the README states; each head has (1024 * 512 + 512 + 512 * 1024 + 1024) * 8 parameters
    assert count_parameters(CrossViewNet(use_fc=True)) == 33_142_400
    assert count_parameters(CrossViewNet(use_fc=False)) == 16_340_608
    assert count_parameters(CrossViewNet().sa1) == (1024 * 512 + 512 + 512 * 1024 + 1024) * 8


@pytest.mark.parametrize(("name", "file_prefix"), [("resnet34", "resnet34-"), ("resnet18", "resnet18-"),
                                                 ("mobilenet_v3_large", "mobilenet_v3_large-")])
def test_missing_imagenet_weights_name_the_file_and_the_flag(monkeypatch, name, file_prefix):
    def offline(url, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision_api, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsUnavailable, match=rf"for {name} .*{file_prefix}.*\.pth.*--no_pretrained"):
        build_backbone(name, pretrained=True)


def test_every_registered_backbone_states_its_channels_and_stride_and_the_heads_fit_it():
    assert list(BACKBONES)[0] == "resnet34" and {"resnet18", "mobilenet_v3_large"} <= set(BACKBONES)
    for name, cls in BACKBONES.items():
        backbone = build_backbone(name).eval()
        for size in ((64, 64), (32, 128), (48, 80)):
            with torch.no_grad():
                features = backbone(torch.zeros(1, 3, *size))
            assert features.shape[1] == cls.out_channels, name
            assert tuple(features.shape[2:]) == feature_grid(name, size) == (size[0] // cls.stride,
                                                                             size[1] // cls.stride), (name, size)
        net = CrossViewNet.from_config(ModelConfig((64, 64), (32, 128), sa_num=2, backbone=name)).eval()
        with torch.no_grad():
            sat, grd = net(torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 32, 128) * 2 - 1)
        assert sat.shape == grd.shape == (2, cls.out_channels * 2) == (2, net.descriptor_size), name
        maps = net.attention_maps(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 32, 128))
        assert maps[0].shape == (1, 2, *feature_grid(name, (64, 64))), name
        assert backbone_of_state(net.state_dict()) == name  # told apart by their tensors alone
    assert backbone_of_state({"extract1.other.weight": torch.zeros(3)}) is None


def test_the_papers_backbone_keeps_the_published_names_and_the_others_are_lighter():
    assert count_parameters(CrossViewNet.from_config(ModelConfig())) == 33_142_400
    assert all(key.startswith(("extract1.layers.", "extract2.layers.", "sa1.", "sa2."))
               for key in CrossViewNet().state_dict())
    assert count_parameters(build_backbone("resnet18")) < count_parameters(build_backbone("resnet34")) / 2
    assert count_parameters(build_backbone("mobilenet_v3_large")) < count_parameters(build_backbone("resnet18")) / 3
