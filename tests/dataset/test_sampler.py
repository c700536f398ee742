"""Training batches for overlapping galleries: the rule that keeps false negatives out, checked pair by pair."""

import itertools

import numpy as np
import pytest

from dataset.sampler import ConflictFreeBatchSampler, EpochBatches, ShuffledBatches


def indices(sampler) -> list[list[int]]:
    """The sampler's batches as dataset indices, each key's epoch checked and dropped."""
    epoch = sampler.sampler.epoch
    batches = list(sampler)
    assert all(key_epoch == epoch for batch in batches for key_epoch, _ in batch)
    return [[index for _, index in batch] for batch in batches]


def grid_labels(num: int, tiles_per_side: int, seed: int) -> np.ndarray:
    """VIGOR-like labels: a random place on a grid of tiles, its nearest tile first, then the three others."""
    rng = np.random.default_rng(seed)
    labels = []
    for row, col in rng.uniform(0, tiles_per_side - 1, (num, 2)):
        around = [(int(row) + dr, int(col) + dc) for dr in (0, 1) for dc in (0, 1)]
        around.sort(key=lambda tile: tile != (round(row), round(col)))
        labels.append([r * tiles_per_side + c for r, c in around])
    return np.array(labels)


def conflict(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the positive tile of one panorama covers the other (and so would be a false negative)."""
    return a[0] == b[0] or a[0] in b[1:] or b[0] in a[1:]


def assert_conflict_free(batch: list[int], labels: np.ndarray) -> None:
    for i, j in itertools.combinations(batch, 2):
        assert not conflict(labels[i], labels[j]), (i, j, labels[i], labels[j])


def conflicts(batch: list[int], labels: np.ndarray) -> int:
    return sum(conflict(labels[i], labels[j]) for i, j in itertools.combinations(batch, 2))


@pytest.mark.parametrize(("num", "side", "batch_size", "seed"), [(200, 30, 8, 0), (401, 40, 16, 1), (64, 30, 32, 2)])
def test_batches_are_free_of_conflicts_every_panorama_comes_once_and_epochs_have_one_length(num, side,
                                                                                            batch_size, seed):
    labels = grid_labels(num, side, seed)
    assert any(conflict(labels[i], labels[j]) for i, j in itertools.combinations(range(num), 2))
    sampler = ConflictFreeBatchSampler(labels, batch_size, seed=seed)
    for epoch in range(3):
        sampler.sampler.set_epoch(epoch)
        batches = indices(sampler)
        assert len(batches) == len(sampler) == -(-num // batch_size)  # as many as Lightning counted at the start
        assert all(len(batch) == batch_size for batch in batches[:-1])
        for batch in batches[:-1]:
            assert_conflict_free(batch, labels)
        assert conflicts(batches[-1], labels) <= 1  # only what could not wait: the loss masks it
        assert sorted(itertools.chain(*batches)) == list(range(num))  # every positive tile visited


def test_when_conflicts_cannot_be_avoided_the_batches_keep_their_number_and_every_panorama():
    labels = grid_labels(150, 6, 1)  # 36 tiles for 150 panoramas: batches of 5 cannot all be free of conflicts
    sampler = ConflictFreeBatchSampler(labels, 5, seed=1)
    batches = indices(sampler)
    assert len(batches) == 30 and sorted(itertools.chain(*batches)) == list(range(150))
    assert sum(conflicts(batch, labels) for batch in batches) < sum(
        conflicts(list(range(start, start + 5)), labels) for start in range(0, 150, 5))  # fewer than in file order


def test_the_order_is_fresh_each_epoch_and_the_same_for_the_same_epoch():
    labels = grid_labels(120, 15, 3)
    first, second = ConflictFreeBatchSampler(labels, 8, seed=4), ConflictFreeBatchSampler(labels, 8, seed=4)
    epochs = []
    for epoch in range(2):
        first.sampler.set_epoch(epoch)
        second.sampler.set_epoch(epoch)
        epochs.append(indices(first))
        assert indices(second) == epochs[-1]
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("world", [2, 3, 4])
def test_each_process_takes_an_equal_slice_of_a_job_wide_batch_free_of_conflicts(world, monkeypatch):
    labels = grid_labels(203, 40, world)
    batch_size = 6
    per_rank = []
    for rank in range(world):
        monkeypatch.setattr(EpochBatches, "_group", staticmethod(lambda rank=rank: (rank, world)))
        per_rank.append(indices(ConflictFreeBatchSampler(labels, batch_size, seed=5)))
    assert {len(batches) for batches in per_rank} == {-(-203 // (batch_size * world))}
    seen = set()
    for number, step in enumerate(zip(*per_rank, strict=True)):
        assert len({len(batch) for batch in step}) == 1 and len(step[0]) <= batch_size
        job_batch = list(itertools.chain(*step))
        assert len(set(job_batch)) == len(job_batch)
        if number < len(per_rank[0]) - 1:
            assert_conflict_free(job_batch, labels)  # --global_negatives sees them all at once
        seen.update(job_batch)
    assert seen == set(range(203))


# ------------------------------------------------------------------------------ shuffled batches (CVUSA, CVACT)


@pytest.mark.parametrize(("num", "batch_size", "world"), [(24, 4, 1), (25, 4, 1), (13, 5, 2), (203, 6, 3), (7, 3, 4)])
def test_shuffled_batches_take_every_pair_once_per_epoch_in_equal_shares(num, batch_size, world, monkeypatch):
    epochs = []
    for epoch in range(2):
        per_rank = []
        for rank in range(world):
            monkeypatch.setattr(EpochBatches, "_group", staticmethod(lambda rank=rank: (rank, world)))
            sampler = ShuffledBatches(num, batch_size, seed=7)
            sampler.sampler.set_epoch(epoch)
            per_rank.append(indices(sampler))
            assert len(per_rank[-1]) == len(sampler) == -(-num // (batch_size * world))
        for step in zip(*per_rank, strict=True):
            assert len({len(batch) for batch in step}) == 1 and 0 < len(step[0]) <= batch_size
        pairs = list(itertools.chain(*itertools.chain(*per_rank)))
        assert set(pairs) == set(range(num)) and len(pairs) == num + (-num % world)  # padded as DistributedSampler
        epochs.append(per_rank)
    assert epochs[0] != epochs[1]  # a fresh order each epoch, fixed by (seed, epoch)


def test_a_resumed_epoch_skips_the_batches_it_trained_and_the_next_epoch_is_whole():
    whole = ShuffledBatches(50, 4, seed=3)
    whole.sampler.set_epoch(2)
    expected = list(whole)
    resumed = ShuffledBatches(50, 4, seed=3)
    resumed.resume_at(2, 5)
    assert list(resumed) == list(resumed) == expected[5:]
    resumed.sampler.set_epoch(3)
    assert len(list(resumed)) == len(resumed) == 13
    resumed.sampler.set_epoch(2)
    assert list(resumed) == expected  # the resumed epoch's skip is spent once training moved on
