import pytest
import torch

from dataset.cvusa import CVUSA
from model.network import CrossViewNet
from tests.helpers import TINY_SIZES
from tests.utils.test_figures import assert_readable_png
from utils import visualize
from utils.cli import UsageError
from utils.images import to_model_range
from utils.visualize import attention_maps_for

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


def test_the_command_line_draws_a_trained_run_and_an_fc_free_checkpoint(tiny_world, tiny_trained_run, fc_free_net,
                                                                        tmp_path):
    common = ["--CVUSA", "--data_root_cvusa", str(tiny_world / "CVUSA"), *TINY_SIZES, "--gpu", "-1"]
    out = tmp_path / "maps.png"
    assert visualize.main([*common, "--checkpoint", str(tiny_trained_run / "best.ckpt"), "--num_samples", "2",
                           "--out", str(out)]) == 0
    assert_readable_png(out, min_bytes=20_000)

    no_fc = tmp_path / "no_fc.pth"
    torch.save(fc_free_net.state_dict(), no_fc)
    out = tmp_path / "sub" / "no_fc.png"
    args = ["--checkpoint", str(no_fc), "--no_fc", "--num_samples", "1", "--out", str(out)]
    assert visualize.main([*common, *args]) == 0
    assert_readable_png(out)

    with pytest.raises(UsageError, match="--checkpoint"):
        visualize.main([*common, "--out", str(out)])
