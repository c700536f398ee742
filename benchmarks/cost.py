"""What a model costs to run: parameters, multiply-adds, latency and memory of each branch.

Multiply-adds (MACs) are counted by `torch.utils.flop_counter.FlopCounterMode` on one image: convolutions and
matrix products (linear layers, einsums, attention), which is what papers count; element-wise operations
(activations, normalisations, softmax, pooling) are left out. FLOPs = 2 x MACs.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def parameters(*modules: nn.Module) -> int:
    """Parameters of the modules together, a module shared between them counted once."""
    seen = {id(p): p for module in modules for p in module.parameters()}
    return sum(p.numel() for p in seen.values())


@torch.no_grad()
def multiply_adds(branch: nn.Module, size: tuple[int, int]) -> int:
    """MACs of `branch` on one image of `size` (H, W)."""
    counter = FlopCounterMode(display=False)
    with counter:
        branch(torch.zeros(1, 3, *size))
    return counter.get_total_flops() // 2


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class Latency:
    median_s: float
    spread: float  # (max - min) / median of the timed runs

    @classmethod
    def of(cls, runs: list[float]) -> Latency:
        median = statistics.median(runs)
        return cls(median, (max(runs) - min(runs)) / median if median else 0.0)


@torch.no_grad()
def latency(call: Callable[[], object], warmup: int, repeats: int) -> Latency:
    """Wall time of `call`, median of `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    return Latency.of(runs)


def gallery_bytes(descriptor_size: int, references: int, bytes_per_value: int = 4) -> int:
    """Memory of `references` descriptors of `descriptor_size` values."""
    return descriptor_size * references * bytes_per_value
