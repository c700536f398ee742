"""Limited field of view and unknown orientation: a sample transform shared by every dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

from utils.images import crop_field_of_view


class LimitedFieldOfView:
    """Cuts a sample's panorama ("grd", uint8 CHW, 360 degrees) to `fov` degrees after a turn in [0, noise).

    DSM's protocol: the panorama is shifted circularly by the turn, then its first `fov`-wide slice is kept.
    Every turn is fixed by `seed` and the sample's "index": in evaluation by (seed, index), so every test sees
    the same crops; in training by (seed, epoch, index), a new one every epoch that depends on nothing else
    (not on loader workers, nor on whether the run was interrupted). The turn in degrees goes into the sample
    as "turn_deg".
    """

    def __init__(self, fov: float = 360.0, orientation_noise: float = 0.0, seed: int = 0) -> None:
        if not 0 < fov <= 360:
            raise ValueError(f"fov must be in (0, 360] degrees, got {fov}")
        if not 0 <= orientation_noise <= 360:
            raise ValueError(f"orientation_noise must be in [0, 360] degrees, got {orientation_noise}")
        self.fov = float(fov)
        self.orientation_noise = float(orientation_noise)
        self.seed = seed

    def turn_deg(self, index: int, epoch: int | None = None) -> float:
        if self.orientation_noise == 0:
            return 0.0
        key = [self.seed, index] if epoch is None else [self.seed, epoch, index]
        return np.random.default_rng(key).random() * self.orientation_noise

    def __call__(self, sample: dict[str, Any], epoch: int | None = None) -> dict[str, Any]:
        turn = self.turn_deg(int(sample["index"]), epoch)
        sample["grd"] = crop_field_of_view(sample["grd"], self.fov, turn)
        sample["turn_deg"] = turn
        return sample

    def __repr__(self) -> str:
        noise = self.orientation_noise
        return f"{type(self).__name__}(fov={self.fov:g}, orientation_noise={noise:g}, seed={self.seed})"
