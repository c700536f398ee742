import math
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.callbacks import Timer

import train
from model.lightning import CrossViewModule
from model.schedule import lr_factor
from tests.helpers import SMALL_SIZES, tiny_run_args


def slow_cosine(progress, warmup):
    """Warm-up then cosine, written out plainly, with the start of the warm-up at 0.001 / (warmup + 0.001)."""
    if progress < warmup:
        return (progress + 0.001) / (warmup + 0.001)
    return (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup))) / 2


@pytest.mark.parametrize("warmup", [0.0, 0.05, 0.3])
def test_cosine_warms_up_linearly_then_decays_to_zero(warmup):
    points = [i / 200 for i in range(201)]
    factors = [lr_factor(p, "cosine", warmup) for p in points]
    assert factors == pytest.approx([slow_cosine(p, warmup) for p in points])
    assert lr_factor(warmup, "cosine", warmup) == pytest.approx(1.0)
    assert lr_factor(1.0, "cosine", warmup) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(warmup + (1 - warmup) / 2, "cosine", warmup) == pytest.approx(0.5)
    after = [f for p, f in zip(points, factors, strict=True) if p >= warmup]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))
    assert lr_factor(-1.0, "cosine", warmup) == lr_factor(0.0, "cosine", warmup)
    assert lr_factor(2.0, "cosine", warmup) == lr_factor(1.0, "cosine", warmup)


def test_the_paper_s_constant_rate_and_an_unknown_schedule():
    assert {lr_factor(p / 10) for p in range(11)} == {1.0}
    with pytest.raises(ValueError, match="lr schedule must be one of constant, cosine, got 'linear'"):
        lr_factor(0.5, "linear")
    with pytest.raises(ValueError, match="linear"):
        CrossViewModule((32, 32), (16, 64), pretrained=False, lr_schedule="linear")


class StoppedClock(Timer):
    def __init__(self, minutes, elapsed_s):
        super().__init__(duration=timedelta(minutes=minutes))
        self.elapsed_s = elapsed_s

    def time_elapsed(self, stage="train"):
        return self.elapsed_s


@pytest.mark.parametrize(("step", "timer", "expected"), [
    (10, None, 0.1),                        # no time box: steps against the epochs' end
    (10, StoppedClock(2, 60.0), 0.5),        # the time box is further along
    (90, StoppedClock(2, 60.0), 0.9),        # the epochs are further along
    (10, StoppedClock(1, 90.0), 1.0),        # past its time: the end
    (10, Timer(duration=None), 0.1),          # a timer without a limit says nothing
])
def test_progress_is_whichever_limit_is_further(step, timer, expected, monkeypatch):
    module = CrossViewModule((32, 32), (16, 64), pretrained=False, lr_schedule="cosine")
    broadcasts = []
    trainer = SimpleNamespace(estimated_stepping_batches=100, global_step=step,
                              callbacks=[] if timer is None else [timer],
                              strategy=SimpleNamespace(broadcast=lambda value, src: broadcasts.append(src) or value))
    monkeypatch.setattr(CrossViewModule, "trainer", property(lambda self: trainer))
    assert module.training_progress() == pytest.approx(expected)
    assert broadcasts == [0]  # every process takes the first one's progress


def test_cosine_training_ends_at_the_rate_of_its_last_step(tiny_world, tmp_path):
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "2", "--no_pretrained", "--name", "run", *SMALL_SIZES,
                         "--lr", "0.001", "--lr_schedule", "cosine", "--lr_warmup", "0.2")
    assert train.main(args) == 0
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", map_location="cpu", weights_only=False)
    steps = ckpt["global_step"]
    assert steps == 6  # 24 pairs in batches of 8, two epochs
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.001 * slow_cosine((steps - 1) / steps, 0.2))
    assert ckpt["hyper_parameters"]["lr"] == 0.001  # the base rate, not the scheduled one
    assert (ckpt["options"]["lr_schedule"], ckpt["options"]["lr_warmup"]) == ("cosine", 0.2)


def test_a_warm_up_outside_the_run_is_refused_in_one_line(tiny_world, tmp_path):
    from engine.options import UsageError

    with pytest.raises(UsageError, match=r"--lr_warmup 1: expected a share of the run in \[0, 1\)"):
        train.main(tiny_run_args(tiny_world, tmp_path, "--lr_schedule", "cosine", "--lr_warmup", "1"))
