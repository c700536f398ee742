"""What the shared builders choose: the precision that `--precision auto` picks on each kind of hardware."""

import pytest
import torch

from engine import build
from engine.build import resolve_precision
from engine.devices import Devices

CPU, GPU = Devices("cpu", 1, "auto"), Devices("gpu", [0], "auto")


@pytest.mark.parametrize(("devices", "avx512_bf16", "amx", "cuda_bf16", "chosen"), [
    (CPU, False, False, False, "32"),  # AVX2 only: bf16 is 10x to 100x slower
    (CPU, True, False, False, "bf16-mixed"),
    (CPU, False, True, False, "bf16-mixed"),
    (GPU, False, False, True, "bf16-mixed"),  # the GPU decides, whatever the CPU
    (GPU, True, True, False, "32"),
])
def test_auto_picks_bf16_only_where_the_hardware_runs_it_fast(monkeypatch, devices, avx512_bf16, amx, cuda_bf16,
                                                               chosen):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    precision, reason = resolve_precision("auto", devices)
    assert precision == chosen and reason
    assert ("no bf16" in reason) == (chosen == "32")
    assert build.cpu_has_fast_bf16() == (avx512_bf16 or amx)


@pytest.mark.parametrize("requested", ["32", "bf16-mixed", "16-mixed", "64"])
def test_other_values_pass_through_unchanged(requested):
    assert resolve_precision(requested, CPU) == (requested, None)
