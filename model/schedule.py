"""Learning-rate schedules: the paper's constant rate, and a warm-up then cosine decay for short runs."""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def lr_factor(progress: float, schedule: str = "constant", warmup: float = 0.0) -> float:
    """The multiple of the base learning rate at `progress` (0: the start of training, 1: its end).

    "cosine": a linear warm-up over the first `warmup` of training, from close to 0 up to 1, then a cosine
    from 1 down to 0 over the rest. "constant": 1 throughout, as the paper trains.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return (progress + 1e-3) / (warmup + 1e-3)
    decayed = (progress - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
    return 0.5 * (1.0 + math.cos(math.pi * decayed))
