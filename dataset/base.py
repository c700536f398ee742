"""What every benchmark's dataset of panoramas shares: a sample per id, its transforms, and a quick look."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.utils.data import Dataset

from utils.images import plot_pair

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class PanoramaDataset(Dataset):
    """A dataset whose sample i is its views (`_views`), {"index": i, "id": ids[i]}, and its labels (`_labels`),
    passed through `transforms` when set. `name` titles its plots."""

    name: str
    ids: list[str]
    transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def _views(self, index: int) -> dict[str, Tensor]:
        """The images of sample `index`: "grd" and, where the dataset pairs it, "sat" (uint8 CHW RGB)."""
        raise NotImplementedError

    def _labels(self, index: int) -> dict[str, Any]:
        """What else sample `index` carries (positions, a gallery's indices)."""
        return {}

    def _aerial_of(self, sample: dict[str, Any]) -> Tensor:
        """The aerial image shown beside a sample's panorama in `plot`."""
        return sample["sat"]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = range(len(self))[index]
        sample = {**self._views(index), "index": index, "id": self.ids[index], **self._labels(index)}
        return sample if self.transforms is None else self.transforms(sample)

    def plot(self, sample: dict[str, Any], path: str | os.PathLike | None = None) -> Figure:
        """The sample's aerial image and panorama side by side; saved to `path` when given."""
        figure = plot_pair(self._aerial_of(sample), sample["grd"], title=f"{self.name} {sample.get('id', '')}".strip())
        if path is not None:
            figure.savefig(path)
        return figure
