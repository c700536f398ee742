import os

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from dataset import synthetic
from dataset.cvact import CVACT
from dataset.cvusa import CVUSA
from dataset.datamodule import (
    DATAMODULES,
    CVACTDataModule,
    CVUSADataModule,
    VIGORDataModule,
    default_num_workers,
)
from dataset.errors import DatasetError
from dataset.negatives import CoveringTiles, EveryOtherPair, WithinDistance
from dataset.sampler import ShuffledBatches
from engine.options import build_parser
from utils.evaluation import OwnPair, PositiveTile, WithinRadius

SAT, GRD = (64, 64), (32, 128)


def cvusa_module(root, **kwargs) -> CVUSADataModule:
    return CVUSADataModule(root, batch_size=3, batch_size_val=2, num_workers=0, sat_size=SAT, grd_size=GRD, **kwargs)


def cvact_module(root, **kwargs) -> CVACTDataModule:
    return CVACTDataModule(root, batch_size=2, batch_size_val=2, num_workers=0, sat_size=SAT, grd_size=GRD, **kwargs)


def test_cvusa_fit_builds_train_and_val_and_batches_them(fake_cvusa_root):
    module = cvusa_module(fake_cvusa_root)
    module.setup("fit")
    assert isinstance(module.train_dataset, CVUSA) and module.train_dataset.split == "train"
    assert len(module.train_dataset) == 4 and len(module.val_dataset) == 3 and module.test_dataset is None
    train_loader = module.train_dataloader()
    assert isinstance(train_loader.batch_sampler, ShuffledBatches) and len(train_loader) == 2
    batches = list(train_loader)
    assert [len(batch["id"]) for batch in batches] == [3, 1]
    batch = batches[0]
    assert set(batch) == {"sat", "grd", "index", "id"}
    assert batch["sat"].shape == (3, 3, *SAT) and batch["sat"].dtype == torch.uint8
    assert batch["grd"].shape == (3, 3, *GRD) and batch["grd"].dtype == torch.uint8
    assert batch["index"].dtype == torch.int64
    assert sorted(torch.cat([batch["index"] for batch in batches]).tolist()) == [0, 1, 2, 3]


def test_cvusa_val_and_test_read_the_val_csv_in_order(fake_cvusa_root):
    module = cvusa_module(fake_cvusa_root)
    module.setup("test")
    assert module.test_dataset is module.val_dataset and module.test_dataset.split == "val"
    for loader in (module.val_dataloader(), module.test_dataloader()):
        assert isinstance(loader.sampler, SequentialSampler)
        batches = list(loader)
        assert [index for batch in batches for index in batch["index"].tolist()] == [0, 1, 2]
        assert [pair_id for batch in batches for pair_id in batch["id"]] == ["0000005", "0000006", "0000007"]


def test_cvusa_module_passes_csv_names(fake_cvusa_root):
    (fake_cvusa_root / "splits" / "tiny.csv").write_text("bingmap/19/0000002.jpg,streetview/panos/0000002.jpg,a.png")
    module = cvusa_module(fake_cvusa_root, train_csv="tiny.csv")
    module.setup("fit")
    assert module.train_dataset.ids == ["0000002"]


@pytest.mark.parametrize(("eval_split", "test_ids"), [("val", 2), ("test", 3)])
def test_cvact_test_loader_reads_the_eval_split(fake_cvact_root, eval_split, test_ids):
    module = cvact_module(fake_cvact_root, eval_split=eval_split)
    module.setup("validate")
    assert module.val_dataset.split == "val" and module.train_dataset is None
    module.setup("test")
    assert isinstance(module.test_dataset, CVACT) and module.test_dataset.split == eval_split
    assert len(module.test_dataset) == test_ids
    batch = next(iter(module.test_dataloader()))
    assert set(batch) == {"sat", "grd", "index", "id", "utm"}
    assert batch["utm"].dtype == torch.float64 and batch["utm"].shape == (2, 2)
    np.testing.assert_array_equal(batch["utm"].numpy(), module.test_dataset.utm[:2])


def test_cvact_fit_shuffles_train_only(fake_cvact_root):
    module = cvact_module(fake_cvact_root)
    module.setup("fit")
    assert isinstance(module.train_dataloader().batch_sampler, ShuffledBatches)
    assert isinstance(module.val_dataloader().sampler, SequentialSampler)
    assert len(module.train_dataset) == 3 and len(module.val_dataset) == 2


def test_workers_are_persistent_and_prefetch(fake_cvusa_root):
    module = CVUSADataModule(fake_cvusa_root, batch_size=2, num_workers=2, sat_size=SAT, grd_size=GRD,
                             prefetch_factor=3)
    module.setup("fit")
    loader = module.train_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers and loader.prefetch_factor == 3
    for _ in range(2):  # the second epoch reuses the workers
        indices = sorted(index for batch in loader for index in batch["index"].tolist())
        assert indices == [0, 1, 2, 3]


def test_defaults_follow_the_machine(fake_cvusa_root):
    module = CVUSADataModule(fake_cvusa_root)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert module.num_workers == default_num_workers() == min(8, cpus)
    assert module.pin_memory == torch.cuda.is_available()
    assert (module.batch_size, module.sat_size, module.grd_size) == (32, (256, 256), (128, 512))
    assert cvusa_module(fake_cvusa_root).val_dataset is None  # nothing is read before setup
    cached = CVUSADataModule(fake_cvusa_root, cache_dir=fake_cvusa_root.parent / "cache")
    assert cached.num_workers == 0 and CVUSADataModule(fake_cvusa_root, num_workers=2, cache_dir="c").num_workers == 2
    assert not (fake_cvusa_root.parent / "cache").exists()  # built in setup(), not before


def test_setup_stops_on_missing_files_before_training(fake_cvusa_root, fake_cvact_root):
    (fake_cvusa_root / "sat" / "0000004.jpg").unlink()
    with pytest.raises(DatasetError, match=r"sat/0000004\.jpg"):
        cvusa_module(fake_cvusa_root).setup("fit")
    with pytest.raises(DatasetError, match="CVACT root"):
        cvact_module(fake_cvact_root / "missing").setup("fit")


def test_loader_before_setup_and_bad_arguments_are_refused(fake_cvact_root):
    with pytest.raises(RuntimeError, match=r"setup\(\)"):
        cvact_module(fake_cvact_root).train_dataloader()
    with pytest.raises(ValueError, match="eval_split"):
        cvact_module(fake_cvact_root, eval_split="train")
    with pytest.raises(ValueError, match="num_workers"):
        CVACTDataModule(fake_cvact_root, num_workers=-1)


def test_cvusa_from_the_synthetic_world(tmp_path):
    synthetic.generate(tmp_path, num_train=12, num_val=6, seed=0, sat_size=SAT, grd_size=GRD, progress=False)
    module = cvusa_module(tmp_path / "CVUSA")
    module.setup("fit")
    assert (len(module.train_dataset), len(module.val_dataset)) == (12, 6)
    batch = next(iter(module.val_dataloader()))
    assert batch["sat"].shape == (2, 3, *SAT) and batch["grd"].shape == (2, 3, *GRD)


def test_cvact_from_the_synthetic_world(tmp_path):
    synthetic.generate(tmp_path, num_train=12, num_val=6, seed=0, sat_size=SAT, grd_size=GRD, progress=False)
    module = cvact_module(tmp_path / "CVACT", eval_split="test")
    module.setup()
    assert (len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)) == (12, 6, 6)
    batch = next(iter(module.train_dataloader()))
    assert batch["sat"].shape == (2, 3, *SAT) and batch["utm"].shape == (2, 2)
    assert torch.isfinite(batch["utm"]).all()


def test_each_dataset_is_one_registered_data_module_built_from_its_own_options(tmp_path):
    opt = build_parser().parse_args(["--data_root_cvusa", str(tmp_path / "u"), "--data_root_cvact", str(tmp_path / "a"),
                                     "--data_root_vigor", str(tmp_path / "v"), "--eval_split", "test",
                                     "--vigor_mode", "cross", "--mat_list", "other.mat", "--val_csv", "v.csv"])
    assert list(DATAMODULES) == ["CVUSA", "CVACT", "VIGOR"]
    built = {name: module.from_options(opt, batch_size=4) for name, module in DATAMODULES.items()}
    for name, datamodule in built.items():
        assert datamodule.name == name and datamodule.root == getattr(opt, datamodule.root_option)
    assert built["CVUSA"].val_csv == "v.csv" and built["CVACT"].mat_file == "other.mat"
    assert [datamodule.evaluation_split for datamodule in built.values()] == ["val", "test", "cross-area test"]
    assert [built[name].matching("test") for name in DATAMODULES] == [OwnPair(), WithinRadius(5.0), PositiveTile()]
    assert built["CVACT"].matching("test").name == "within 5 m"
    assert built["CVACT"].matching("val") == OwnPair()  # validation runs on CVACT_val, one-to-one
    opt.match_radius = 0
    assert DATAMODULES["CVACT"].from_options(opt).matching("test") == OwnPair()  # --match_radius 0: one-to-one
    opt.eval_split, opt.match_radius = "val", 5.0
    assert DATAMODULES["CVACT"].from_options(opt).matching("test") == OwnPair()  # CVACT_val is one-to-one
    rules = [type(datamodule.not_negatives) for datamodule in built.values()]
    assert rules == [EveryOtherPair, WithinDistance, CoveringTiles]


def test_the_figures_take_each_datasets_evaluation_pairs(tiny_world):
    sizes = {"sat_size": (64, 64), "grd_size": (32, 128)}
    cvusa = CVUSADataModule(tiny_world / "CVUSA", **sizes).figure_pairs(None)
    cvact = CVACTDataModule(tiny_world / "CVACT", eval_split="test", **sizes).figure_pairs(None)
    vigor = VIGORDataModule(tiny_world / "VIGOR", mode="same", **sizes).figure_pairs(None)
    assert (cvusa.split, cvact.split, vigor.split) == ("val", "test", "test")
    for pairs in (cvusa, cvact, vigor):
        sample = pairs[0]
        assert sample["sat"].shape == (3, 64, 64) and sample["grd"].shape == (3, 32, 128)
