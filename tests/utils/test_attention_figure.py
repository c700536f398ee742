import pytest
import torch

from dataset.cvusa import CVUSA
from model.network import CrossViewNet
from utils.attention_figure import attention_maps_for
from utils.images import to_model_range

SIZES = {"sat_size": (64, 64), "grd_size": (32, 128)}


@pytest.fixture(scope="module")
def samples(tiny_world):
    dataset = CVUSA(tiny_world / "CVUSA", "val", **SIZES)
    return [dataset[0], dataset[5]]


@pytest.fixture(scope="module")
def fc_net():
    return CrossViewNet(**SIZES, sa_num=8)


@pytest.fixture(scope="module")
def fc_free_net():
    return CrossViewNet(**SIZES, use_fc=False)


def test_the_fc_model_has_k_maps_of_the_feature_maps_size(samples, fc_net):
    net = fc_net.train()
    sat_maps, grd_maps = attention_maps_for(net, samples[0]["sat"], samples[0]["grd"])
    assert sat_maps.shape == (8, 8, 8) and grd_maps.shape == (8, 4, 16)
    assert net.training  # back in the mode it came in
    batch = attention_maps_for(net, torch.stack([s["sat"] for s in samples]), torch.stack([s["grd"] for s in samples]))
    assert batch[0].shape == (2, 8, 8, 8) and batch[1].shape == (2, 8, 4, 16)
    torch.testing.assert_close(batch[0][0], sat_maps)


def test_the_fc_free_model_has_the_max_pooled_map(samples, fc_free_net):
    net = fc_free_net.eval()
    sat_maps, grd_maps = attention_maps_for(net, samples[0]["sat"], samples[0]["grd"])
    assert sat_maps.shape == (1, 8, 8) and grd_maps.shape == (1, 4, 16)
    with torch.no_grad():
        pooled = net.extract2(to_model_range(samples[0]["grd"])[None]).amax(dim=1)
    torch.testing.assert_close(grd_maps, pooled)
