"""Training batches without false negatives, for galleries whose tiles overlap (VIGOR)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


class EpochPermutation(Sampler[int]):
    """A fresh permutation of range(n) each epoch, fixed by (seed, epoch): a resumed run draws the same ones.

    Lightning calls `set_epoch` on a batch sampler's `sampler` at the start of every epoch.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class ConflictFreeBatchSampler(Sampler[list[int]]):
    """Batches in which no panorama's positive tile covers another panorama of the batch.

    `labels[i]` is panorama i's positive tile, then its semi-positives. Panoramas i and j conflict when they
    share their positive, or when the positive of one is a semi-positive of the other: the in-batch tile of
    one would then be a negative of the other while showing its place. Each epoch takes every panorama once,
    in the order of a fresh permutation; one that conflicts with the batch being filled waits for the next.

    Under DDP each process takes its slice of one job-wide batch of `batch_size * world` panoramas, so the
    batches of all processes together are free of conflicts too (`--global_negatives`). Every process gets
    as many batches of the same size: a job-wide batch left short (at the end of the epoch, or by conflicts)
    is topped up to a multiple of the world with other panoramas of the epoch that do not conflict with it,
    or, where none fits, cut down to one.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.labels = np.asarray(labels, np.int64)
        self.batch_size = batch_size
        self.sampler = EpochPermutation(len(self.labels), seed)
        self._plan: tuple[tuple[int, int, int], list[list[int]]] | None = None

    @staticmethod
    def _group() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def job_batches(self, world: int = 1) -> list[list[int]]:
        """This epoch's job-wide batches, each of at most batch_size * world panoramas."""
        size = self.batch_size * world
        stream = iter(self.sampler)
        pending: deque[int] = deque()
        batches: list[_Batch] = []
        exhausted = False
        while pending or not exhausted:
            batch = _Batch(self.labels)
            for _ in range(len(pending)):
                if len(batch.items) == size:
                    break
                item = pending.popleft()
                if not batch.take(item):
                    pending.append(item)
            while len(batch.items) < size and not exhausted:
                item = next(stream, None)
                if item is None:
                    exhausted = True
                elif not batch.take(item):
                    pending.append(item)
            if batch.items:
                batches.append(batch)
        for batch in batches if world > 1 else ():
            if len(batch.items) % world:
                self._top_up(batch, world)
        return [batch.items for batch in batches if batch.items]

    def _top_up(self, batch: _Batch, world: int) -> None:
        """Add panoramas that fit to `batch` until its size divides by `world`, or cut it down where none fits."""
        for item in self.sampler:
            if len(batch.items) % world == 0:
                return
            if item not in batch.items:
                batch.take(item)
        del batch.items[len(batch.items) - len(batch.items) % world:]

    def _batches(self) -> list[list[int]]:
        rank, world = self._group()
        key = (self.sampler.epoch, rank, world)
        if self._plan is None or self._plan[0] != key:
            mine = []
            for batch in self.job_batches(world):
                share = len(batch) // world
                if share:
                    mine.append(batch[rank * share:(rank + 1) * share])
            self._plan = (key, mine)
        return self._plan[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


class _Batch:
    """A batch being filled, with the positives of its panoramas and every tile that covers one of them."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.items: list[int] = []
        self.positives: set[int] = set()
        self.covered: set[int] = set()

    def take(self, item: int) -> bool:
        """Add panorama `item` unless it conflicts with one already in; whether it was added."""
        tiles = self.labels[item].tolist()
        if tiles[0] in self.covered or self.positives.intersection(tiles):
            return False
        self.items.append(item)
        self.positives.add(tiles[0])
        self.covered.update(tiles)
        return True
