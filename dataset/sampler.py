"""Training batches fixed by (seed, epoch), the same on any number of workers and after any interruption.

Every training batch sampler here yields lists of (epoch, index) keys: the dataset wrapper `EpochSamples`
gives each sample its epoch, so random draws in loader workers (the limited field of view's turns) depend on
(seed, epoch, index) alone. `EpochBatches.resume_at` skips the batches an interrupted epoch already trained.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from dataset.views import LimitedFieldOfView


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


class EpochSamples(Dataset):
    """A training split read by the (epoch, index) keys of `EpochBatches`: the view's turn is drawn from
    (seed, epoch, index), wherever and whenever the sample is read."""

    def __init__(self, dataset: Dataset, view: LimitedFieldOfView | None = None) -> None:
        self.dataset = dataset
        self.view = view

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        sample = self.dataset[index]
        return sample if self.view is None else self.view(sample, epoch)


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """This process's training batches of one epoch, as (epoch, index) keys; the epoch is its `sampler`'s.

    Subclasses plan the job-wide batches of an epoch (`_job_batches`); every process takes its slice of each, so
    the batches of all processes together are the job's batches, and all processes get as many of one size.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.sampler = EpochPermutation(n, seed)
        self._resume: tuple[int, int] | None = None
        self._plan: tuple[tuple[int, int, int], list[list[int]]] | None = None

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Start at `epoch`, without the first `batches_done` batches of it (trained before an interruption)."""
        self.sampler.set_epoch(epoch)
        self._resume = (epoch, batches_done)

    @staticmethod
    def _group() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _job_batches(self, world: int) -> list[list[int]]:
        raise NotImplementedError

    def _batches(self) -> list[list[int]]:
        rank, world = self._group()
        key = (self.sampler.epoch, rank, world)
        if self._plan is None or self._plan[0] != key:
            mine = []
            for batch in self._job_batches(world):
                share = len(batch) // world
                mine.append(batch[rank * share:(rank + 1) * share])
            self._plan = (key, mine)
        return self._plan[1]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        """The epoch's batches; in the epoch a run resumed in, without those it trained (Lightning may start
        iterating that epoch twice), and from the next epoch on all of them."""
        epoch, skip = self.sampler.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        elif self._resume is not None:
            self._resume = None
        return iter([[(epoch, index) for index in batch] for batch in self._batches()[skip:]])

    def __len__(self) -> int:
        return math.ceil(self.sampler.n / (self.batch_size * self._group()[1]))


class ShuffledBatches(EpochBatches):
    """Batches of a fresh permutation each epoch; under DDP the last job-wide batch wraps around to the
    permutation's start so that every process gets as many pairs (as DistributedSampler pads)."""

    def _job_batches(self, world: int) -> list[list[int]]:
        order = list(self.sampler)
        size = self.batch_size * world
        count = len(self)
        batches = [order[start:start + size] for start in range(0, count * size, size)]
        short = -len(batches[-1]) % world
        batches[-1] = batches[-1] + order[:short]
        return batches


class ConflictFreeBatchSampler(EpochBatches):
    """Batches in which no panorama's positive tile covers another panorama of the batch.

    `labels[i]` is panorama i's positive tile, then its semi-positives. Panoramas i and j conflict when they
    share their positive, or when the positive of one is a semi-positive of the other: the in-batch tile of
    one would then be a negative of the other while showing its place. Each epoch takes every panorama once,
    in the order of a fresh permutation; one that conflicts with the batch being filled waits for the next.

    Every epoch has the same number of batches, ceil(N / (batch_size * world)), as Lightning expects (it
    validates after that many). Panoramas still waiting when the epoch's panoramas run out join the batches
    with room left, in conflict if nothing else fits: the loss leaves such pairs out, as it does CVACT's
    pairs within 25 m (`dataset.negatives.covering_pairs`). On real data they are a handful per epoch.

    Under DDP each process takes its slice of one job-wide batch of `batch_size * world` panoramas, so the
    batches of all processes together are free of conflicts too (`--global_negatives`). Every process gets
    as many batches of the same size: the last job-wide batch is topped up to a multiple of the world with
    panoramas of earlier batches, preferring those that do not conflict with it.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0) -> None:
        self.labels = np.asarray(labels, np.int64)
        super().__init__(len(self.labels), batch_size, seed)

    def _job_batches(self, world: int) -> list[list[int]]:
        return self.job_batches(world)

    def job_batches(self, world: int = 1) -> list[list[int]]:
        """This epoch's job-wide batches: ceil(N / (batch_size * world)) of them, each at most that size."""
        size = self.batch_size * world
        count = math.ceil(len(self.labels) / size)
        stream = iter(self.sampler)
        pending: deque[int] = deque()
        batches = [_Batch(self.labels) for _ in range(count)]
        for batch in batches:
            for _ in range(len(pending)):
                if len(batch.items) == size:
                    break
                item = pending.popleft()
                if not batch.take(item):
                    pending.append(item)
            for item in stream if len(batch.items) < size else ():
                if not batch.take(item):
                    pending.append(item)
                if len(batch.items) == size:
                    break
        for item in pending:  # the epoch's panoramas ran out: place the rest, by a swap where one frees a place
            room = [batch for batch in batches if len(batch.items) < size]
            fitting = [batch for batch in room if batch.fits(item)]
            if fitting:
                fitting[0].take(item)
            elif not any(self._swap(item, batch, room) for batch in batches):
                room[0].take(item, force=True)  # no way round a conflict: the loss leaves the pair out
        self._top_up(batches[-1], world)
        return [batch.items for batch in batches]

    def _top_up(self, last: _Batch, world: int) -> None:
        """Fill the last batch up to a multiple of the world with other panoramas, those that fit first."""
        for force in (False, True):
            for item in self.sampler:
                if len(last.items) % world == 0:
                    return
                if item not in last.items:
                    last.take(item, force=force)

    @staticmethod
    def _swap(item: int, full: _Batch, room: list[_Batch]) -> bool:
        """Put `item` into `full` in place of one of its panoramas that fits a batch with room; whether it could."""
        for other in list(full.items):
            if not full.fits(item, leaving=other):
                continue
            target = next((batch for batch in room if batch is not full and batch.fits(other)), None)
            if target is not None:
                full.remove(other)
                full.take(item)
                target.take(other)
                return True
        return False



class _Batch:
    """A batch being filled, with the positives of its panoramas and every tile that covers one of them."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.items: list[int] = []
        self.positives: Counter[int] = Counter()
        self.covered: Counter[int] = Counter()

    def fits(self, item: int, leaving: int | None = None) -> bool:
        """Whether `item` conflicts with none of the batch's panoramas (but `leaving`)."""
        tiles = self.labels[item].tolist()
        gone = self.labels[leaving].tolist() if leaving is not None else []
        if self.covered[tiles[0]] > gone.count(tiles[0]):
            return False
        return all(self.positives[tile] <= (bool(gone) and gone[0] == tile) for tile in set(tiles))

    def take(self, item: int, force: bool = False) -> bool:
        """Add panorama `item` unless it conflicts with one already in (or `force`); whether it was added."""
        if not force and not self.fits(item):
            return False
        tiles = self.labels[item].tolist()
        self.items.append(item)
        self.positives[tiles[0]] += 1
        self.covered.update(tiles)
        return True

    def remove(self, item: int) -> None:
        tiles = self.labels[item].tolist()
        self.items.remove(item)
        self.positives[tiles[0]] -= 1
        self.covered.subtract(tiles)
