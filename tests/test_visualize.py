import pytest
import torch

import visualize
from engine.options import UsageError
from model.network import CrossViewNet
from tests.helpers import TINY_SIZES
from tests.utils.test_figures import assert_readable_png

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)


def test_the_command_line_draws_a_trained_run_and_an_fc_free_checkpoint(tiny_world, tiny_trained_run, tmp_path):
    common = ["--CVUSA", "--data_root_cvusa", str(tiny_world / "CVUSA"), "--gpu", "-1"]
    out = tmp_path / "maps.png"
    # a checkpoint of this project gives its own sizes
    assert visualize.main([*common, "--checkpoint", str(tiny_trained_run / "best.ckpt"), "--num_samples", "2",
                           "--out", str(out)]) == 0
    assert_readable_png(out, min_bytes=20_000)

    no_fc = tmp_path / "no_fc.pth"
    torch.save(CrossViewNet((64, 64), (32, 128), use_fc=False).state_dict(), no_fc)
    out = tmp_path / "sub" / "no_fc.png"
    args = ["--checkpoint", str(no_fc), "--num_samples", "1", "--out", str(out)]  # bare weights: no --no_fc needed
    assert visualize.main([*common, *TINY_SIZES, *args]) == 0
    assert_readable_png(out)

    with pytest.raises(UsageError, match="--checkpoint"):
        visualize.main([*common, "--out", str(out)])
