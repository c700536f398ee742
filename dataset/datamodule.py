"""Lightning data modules for CVUSA, CVACT and VIGOR: datasets built (and their files checked) in setup()."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dataset.cvact import CVACT, MAT_FILE
from dataset.cvusa import CVUSA, TRAIN_CSV, VAL_CSV
from dataset.negatives import CoveringTiles, EveryOtherPair, NotNegatives, WithinDistance
from dataset.sampler import ConflictFreeBatchSampler, EpochBatches, EpochSamples, ShuffledBatches
from dataset.views import LimitedFieldOfView
from dataset.vigor import MODES, VIGOR, VIGORGallery
from utils.evaluation import Matching, OwnPair, PositiveTile, WithinRadius

MAX_DEFAULT_WORKERS = 8
EVAL_SPLITS = ("val", "test")


def default_num_workers() -> int:
    """The CPUs this process may use (respects affinity masks set by schedulers), at most 8."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_DEFAULT_WORKERS, available)


class _CrossViewDataModule(pl.LightningDataModule):
    """Loaders shared by the benchmarks: shuffled training, ordered evaluation, workers kept alive.

    Training batches and every random draw in them are fixed by `seed` and the epoch (`dataset.sampler`), and
    this module shards them itself under DDP (the Trainer runs with use_distributed_sampler=False), so a run
    gets the same batches on any number of loader workers, and a run interrupted mid-epoch continues with the
    batches it would have had: its checkpoints carry where the epoch stood (`state_dict`). Evaluation is
    sharded by DistributedSampler, whose padding the model drops by index.

    `fov` and `orientation_noise` (degrees) cut every panorama to a limited field of view after a random
    turn (`LimitedFieldOfView`): new every epoch in training, fixed per sample by `seed` in evaluation.
    `cache_dir` keeps the decoded images of every split and view there (`utils.image_cache`), so decoding is
    paid once, not every epoch. Reading the cache is then cheaper than handing batches between processes, so
    `num_workers` None means no worker processes with a cache (`benchmarks/README.md` has the figures) and one
    per CPU, at most 8, without.

    A dataset is one subclass, whose constructor takes the folder, its own settings and `**loading` for these:
    its `add_flags`, its `name` (its flag, `--CVUSA`, and its runs' prefix), the option naming its
    folder (`root_option`), `from_options` reading its own flags, its rule of which in-batch pairs are not
    negatives (`not_negatives`), what its evaluation is called (`evaluation_split`), by which protocol a
    retrieved image counts in each stage (`matching`), its queries and references (`evaluation_datasets`), and
    its evaluation pairs for figures (`figure_pairs`); `DATAMODULES` lists them by name for the entry points.
    """

    name: str
    root_option: str
    not_negatives: NotNegatives = EveryOtherPair()

    @classmethod
    def add_flags(cls, add: Callable[..., Any]) -> None:
        """Its flags (`add` is an argparse group's add_argument): `--NAME`, which chooses it, its folder's
        (`root_option`) and its own settings, all read back by `from_options`."""
        raise NotImplementedError

    @classmethod
    def from_options(cls, options: argparse.Namespace, **common: Any) -> _CrossViewDataModule:
        """The data module the command line's options describe; `common` holds the settings every one takes."""
        raise NotImplementedError

    @property
    def evaluation_split(self) -> str:
        """The split validation and testing evaluate, as reports name it."""
        return "val"

    def matching(self, stage: str) -> Matching:
        """The protocol by which a retrieved aerial image counts as a match in `stage` ("val" or "test")."""
        return OwnPair()

    def evaluation_datasets(self, stage: str) -> tuple[Dataset, Dataset]:
        """The queries and the references `stage` evaluates: for pairs, the same dataset twice."""
        dataset = self.test_dataset if stage == "test" else self.val_dataset
        return dataset, dataset

    def figure_pairs(self, transforms: Callable[[dict[str, Any]], dict[str, Any]] | None) -> Dataset:
        """The evaluation split as aerial / panorama pairs, for figures."""
        raise NotImplementedError

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        batch_size: int = 32,
        batch_size_val: int = 32,
        num_workers: int | None = None,
        sat_size: tuple[int, int] = (256, 256),
        grd_size: tuple[int, int] = (128, 512),
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        fov: float = 360.0,
        orientation_noise: float = 0.0,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.root = os.fspath(root)
        self.batch_size = batch_size
        self.batch_size_val = batch_size_val
        if num_workers is None:
            num_workers = 0 if cache_dir is not None else default_num_workers()
        self.num_workers = num_workers
        self.sat_size = tuple(sat_size)
        self.grd_size = tuple(grd_size)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.prefetch_factor = prefetch_factor
        self.fov = float(fov)
        self.orientation_noise = float(orientation_noise)
        self.seed = seed
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        LimitedFieldOfView(self.fov, self.orientation_noise)  # checks the values now, not in a worker
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self._resume_at: tuple[int, int] | None = None

    def view(self, split: str) -> LimitedFieldOfView | None:
        """The panoramas' transform for `split`: none at 360 degrees without turns. Training applies it per epoch
        (`EpochSamples`), so the training split's dataset itself gets none (`transforms`)."""
        if self.fov == 360 and self.orientation_noise == 0:
            return None
        return LimitedFieldOfView(self.fov, self.orientation_noise, seed=self.seed)

    def transforms(self, split: str) -> LimitedFieldOfView | None:
        """What a split's dataset applies to its samples itself: the view, outside training."""
        return None if split == "train" else self.view(split)

    def state_dict(self) -> dict[str, int]:
        """Where training stands, for a checkpoint: the epoch to continue and how many of its batches it trained.

        Mirrors Lightning's loops: an epoch whose training ended (processed) continues with the next one from
        its start; an epoch interrupted between two steps continues after the batches it trained.
        """
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":  # also while fit validates, when epoch ends are saved
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        mid_epoch = epochs.processed == epochs.completed
        batches_done = trainer.fit_loop.epoch_loop.batch_progress.current.processed if mid_epoch else 0
        return {"epoch": epochs.processed, "batches_done": batches_done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if "epoch" in state_dict:
            self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches_done"]))

    def train_batches(self) -> EpochBatches:
        return ShuffledBatches(len(self.train_dataset), self.batch_size, seed=self.seed)

    def image_paths(self) -> list[str]:
        """Every image file of the splits set up so far (both views, and a gallery of its own)."""
        datasets = [self.train_dataset, self.val_dataset, self.test_dataset, getattr(self, "gallery", None)]
        return [path for dataset in datasets if dataset is not None
                for name in ("sat_paths", "grd_paths", "paths") for path in getattr(dataset, name, [])]

    def _loader(self, dataset: Dataset | None, batch_size: int, shuffle: bool, **kwargs) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built this split yet")
        workers = self.num_workers
        if "batch_sampler" not in kwargs:
            kwargs.update(batch_size=batch_size, shuffle=shuffle, drop_last=False)
        return DataLoader(
            dataset,
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built this split yet")
        batches = self.train_batches()
        if self._resume_at is not None:  # the first loader after a checkpoint was loaded
            batches.resume_at(*self._resume_at)
            self._resume_at = None
        return self._loader(EpochSamples(self.train_dataset, self.view("train")), self.batch_size, shuffle=False,
                            batch_sampler=batches)

    def _eval_loader(self, dataset: Dataset | None) -> DataLoader:
        sharded = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        sampler = DistributedSampler(dataset, shuffle=False) if sharded and dataset is not None else None
        return self._loader(dataset, self.batch_size_val, shuffle=False, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_loader(self.test_dataset)


class CVUSADataModule(_CrossViewDataModule):
    """CVUSA 19zl: train on train_csv; validate and test on val_csv (the benchmark has no separate test split)."""

    name, root_option = "CVUSA", "data_root_cvusa"

    @classmethod
    def add_flags(cls, add: Callable[..., Any]) -> None:
        add("--CVUSA", action="store_true", help="CVUSA (the dataset when none is named)")
        add("--data_root_cvusa", default="./data/CVUSA/", help="the dataset's folder")
        add("--train_csv", default=TRAIN_CSV, help="training pairs, in the folder's splits/")
        add("--val_csv", default=VAL_CSV, help="validation pairs, in splits/ (also the test split)")

    @classmethod
    def from_options(cls, options: argparse.Namespace, **common: Any) -> CVUSADataModule:
        return cls(options.data_root_cvusa, train_csv=options.train_csv, val_csv=options.val_csv, **common)

    def figure_pairs(self, transforms: Callable[[dict[str, Any]], dict[str, Any]] | None) -> CVUSA:
        return CVUSA(self.root, "val", self.sat_size, self.grd_size, self.train_csv, self.val_csv, transforms)

    def __init__(self, root: str | os.PathLike, train_csv: str = TRAIN_CSV, val_csv: str = VAL_CSV,
                 **loading: Any) -> None:
        super().__init__(root, **loading)
        self.train_csv = train_csv
        self.val_csv = val_csv

    def _dataset(self, split: str) -> CVUSA:
        return CVUSA(self.root, split, self.sat_size, self.grd_size, self.train_csv, self.val_csv,
                     self.transforms(split), self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train")
        if stage in (None, "fit", "validate", "test") and self.val_dataset is None:
            self.val_dataset = self._dataset("val")
        if stage in (None, "test"):
            self.test_dataset = self.val_dataset


class CVACTDataModule(_CrossViewDataModule):
    """CVACT: train on trainSet; validate on valSet (CVACT_val); test on `eval_split`, "val" or "test" (valSetAll).

    In a training batch, pairs closer than 25 m are not each other's negatives (as the authors' loss rules).
    """

    name, root_option = "CVACT", "data_root_cvact"
    not_negatives = WithinDistance(25.0)

    @classmethod
    def add_flags(cls, add: Callable[..., Any]) -> None:
        add("--CVACT", action="store_true", help="CVACT (Liu and Li 2019)")
        add("--data_root_cvact", default="./data/CVACT/", help="the dataset's folder")
        add("--mat_list", default=MAT_FILE, help="the splits and positions, in the folder")
        add("--eval_split", choices=EVAL_SPLITS, default="val", help="val (CVACT_val) or test (valSetAll)")
        add("--match_radius", type=float, default=5.0,
            help="testing on CVACT_test: a retrieved image within this many metres of the query counts; "
                 "0: one-to-one, only the query's own aerial image counts")

    @classmethod
    def from_options(cls, options: argparse.Namespace, **common: Any) -> CVACTDataModule:
        return cls(options.data_root_cvact, mat_file=options.mat_list, eval_split=options.eval_split,
                   match_radius=options.match_radius, **common)

    @property
    def evaluation_split(self) -> str:
        return self.eval_split

    def matching(self, stage: str) -> Matching:
        """CVACT_test is reported two ways in the literature: within `match_radius` metres of the query (the
        dataset authors' rule, 5 m) or one-to-one, where only the query's own aerial image counts (0).
        CVACT_val, which validation uses, is one-to-one."""
        if stage != "test" or self.eval_split != "test" or self.match_radius == 0:
            return OwnPair()
        return WithinRadius(self.match_radius)

    def figure_pairs(self, transforms: Callable[[dict[str, Any]], dict[str, Any]] | None) -> CVACT:
        return CVACT(self.root, self.eval_split, self.sat_size, self.grd_size, self.mat_file, transforms)

    def __init__(self, root: str | os.PathLike, mat_file: str = MAT_FILE, eval_split: str = "val",
                 match_radius: float = 5.0, **loading: Any) -> None:
        if eval_split not in EVAL_SPLITS:
            raise ValueError(f"CVACT eval_split must be one of {', '.join(EVAL_SPLITS)}, got {eval_split!r}")
        if not match_radius >= 0:
            raise ValueError(f"CVACT match_radius must be metres >= 0 (0: one-to-one pairing), got {match_radius!r}")
        super().__init__(root, **loading)
        self.mat_file = mat_file
        self.eval_split = eval_split
        self.match_radius = float(match_radius)

    def _dataset(self, split: str) -> CVACT:
        return CVACT(self.root, split, self.sat_size, self.grd_size, self.mat_file, self.transforms(split),
                     self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train")
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._dataset("val")
        if stage in (None, "test") and self.test_dataset is None:
            if self.eval_split == "val" and self.val_dataset is not None:
                self.test_dataset = self.val_dataset
            else:
                self.test_dataset = self._dataset(self.eval_split)


class VIGORDataModule(_CrossViewDataModule):
    """VIGOR in `mode` "same" or "cross": train on the mode's training panoramas, validate and test on its test
    panoramas against the gallery of the test cities.

    Training batches come from `ConflictFreeBatchSampler`, so no panorama meets a tile that covers it as a
    negative (the few pairs it cannot keep apart carry their labels to the loss, which leaves them out).
    Evaluation has two loaders, the panoramas (queries) and the gallery (references); the model embeds each
    and ranks the gallery for every query. This module shards its loaders itself under DDP (the Trainer
    runs with use_distributed_sampler=False): the training sampler by slices of job-wide batches,
    evaluation by DistributedSampler, whose padding the model drops by index.
    """

    name, root_option = "VIGOR", "data_root_vigor"
    not_negatives = CoveringTiles()

    @classmethod
    def add_flags(cls, add: Callable[..., Any]) -> None:
        add("--VIGOR", action="store_true", help="VIGOR (Zhu et al. 2021) in the mode of --vigor_mode")
        add("--data_root_vigor", default="./data/VIGOR/", help="the dataset's folder")
        add("--vigor_mode", choices=MODES, default="same",
            help="same-area (all four cities) or cross-area (train NewYork, Seattle; test SanFrancisco, Chicago)")

    @classmethod
    def from_options(cls, options: argparse.Namespace, **common: Any) -> VIGORDataModule:
        return cls(options.data_root_vigor, mode=options.vigor_mode, **common)

    @property
    def evaluation_split(self) -> str:
        return f"{self.mode}-area test"

    def matching(self, stage: str) -> Matching:
        return PositiveTile()

    def evaluation_datasets(self, stage: str) -> tuple[Dataset, Dataset]:
        return super().evaluation_datasets(stage)[0], self.gallery

    def figure_pairs(self, transforms: Callable[[dict[str, Any]], dict[str, Any]] | None) -> VIGOR:
        return VIGOR(self.root, "test", self.mode, self.sat_size, self.grd_size, transforms, pairs=True)

    def __init__(self, root: str | os.PathLike, mode: str = "same", **loading: Any) -> None:
        super().__init__(root, **loading)
        self.mode = mode
        self.gallery: VIGORGallery | None = None

    def _dataset(self, split: str) -> VIGOR:
        return VIGOR(self.root, split, self.mode, self.sat_size, self.grd_size, self.transforms(split),
                     cache_dir=self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train")
        if stage in (None, "fit", "validate", "test") and self.val_dataset is None:
            self.val_dataset = self._dataset("test")
            self.gallery = self.val_dataset.gallery
        if stage in (None, "test"):
            self.test_dataset = self.val_dataset

    def train_batches(self) -> EpochBatches:
        return ConflictFreeBatchSampler(self.train_dataset.labels, self.batch_size, seed=self.seed)

    def _eval_loader(self, queries: Dataset | None) -> list[DataLoader]:
        """Two loaders: the queries, then the gallery they are ranked against."""
        shard = super()._eval_loader
        return [shard(dataset) for dataset in (queries, self.gallery)]


DATAMODULES: dict[str, type[_CrossViewDataModule]] = {
    module.name: module for module in (CVUSADataModule, CVACTDataModule, VIGORDataModule)
}
