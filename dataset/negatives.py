"""Which pairs of a training batch cannot serve as each other's negatives, as each dataset rules.

The loss knows no dataset: it takes one (B, B) mask, True where aerial image i must not count as a
negative of panorama j (the diagonal, the true pairs, is left out by the loss itself). A data module
names its rule in `not_negatives`; the rule names the labels it needs from the batch (`label_keys`),
which the LightningModule gathers across devices with the descriptors under `--global_negatives`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch


class NotNegatives(Protocol):
    """A dataset's rule: the labels it reads from a batch, and the (B, B) mask from them (None: no pair)."""

    @property
    def label_keys(self) -> tuple[str, ...]: ...

    def __call__(self, labels: Mapping[str, torch.Tensor]) -> torch.Tensor | None: ...


@dataclass(frozen=True)
class EveryOtherPair:
    """CVUSA: every other pair of the batch is a negative."""

    label_keys: tuple[str, ...] = ()

    def __call__(self, labels: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return None


@dataclass(frozen=True)
class WithinDistance:
    """CVACT: pairs whose positions (`key`, metres, (B, 2)) lie closer than `metres` show the same place."""

    metres: float = 25.0
    key: str = "utm"

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (self.key,)

    def __call__(self, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        positions = labels[self.key].to(torch.float64)
        return torch.cdist(positions, positions) < self.metres


@dataclass(frozen=True)
class CoveringTiles:
    """VIGOR: a tile that is another panorama's positive or semi-positive shows that panorama's place."""

    label_keys: tuple[str, ...] = ("positive", "semi_positives")

    def __call__(self, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return covering_pairs(labels["positive"], labels["semi_positives"])


def covering_pairs(positive: torch.Tensor, semi_positives: torch.Tensor) -> torch.Tensor:
    """(B, B) True where the aerial tile of pair i (`positive[i]`) covers the panorama of pair j: it is j's
    positive or one of its semi-positives (B, S), so it shows j's place and cannot serve as j's negative."""
    labels = torch.cat([positive[:, None], semi_positives], dim=1)
    return (positive[:, None, None] == labels[None, :, :]).any(-1)
