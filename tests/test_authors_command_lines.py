"""The bodies of the authors' four scripts, entry point replaced by train.py and paths filled in, run as they are.

The command lines below are copied flag for flag from the authors' train_cvusa.sh, train_cvact.sh,
test_cvusa.sh and test_cvact.sh. They train at the paper's sizes with batch 32 for 300 epochs, which a CPU
cannot do in a test, so two things are made small around them and nothing in them: the backbone is a
stand-in with the real one's stride and channels, and training stops after its first epoch.
"""

import json

import pytest
import torch
from torch import nn

import model.backbone
import train
from dataset.synthetic import generate
from model.network import CrossViewNet

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)

TRAIN_CVUSA = "--data_root_cvusa {cvusa} --gpu 0 --batch_size 32 --batch_size_val 32 --n_epochs 300 --CVUSA"
TRAIN_CVACT = "--data_root_cvact {cvact} --gpu 0 --batch_size 32 --batch_size_val 32 --n_epochs 300 --CVACT"
TEST_CVUSA = ("--data_root_cvusa {cvusa} --gpu 0 --batch_size_val 32 --n_epochs 300 --CVUSA --test "
              "--checkpoint ./weight/cvusa.pth")
TEST_CVACT = ("--data_root_cvact {cvact} --gpu 0 --batch_size_val 32 --n_epochs 300 --CVACT --test "
              "--checkpoint ./weight/cvact.pth")


class StandInBackbone(nn.Module):
    """One stride-8 convolution to 256 channels: the ResNet-34 cut's output shape at a fraction of its cost."""

    out_channels = 256
    stride = 8

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 256, kernel_size=8, stride=8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Enough training pairs for the scripts' batch of 32."""
    out = tmp_path_factory.mktemp("authors_world")
    generate(out, num_train=33, num_val=5, seed=5, sat_size=(64, 64), grd_size=(32, 128), progress=False)
    return out


@pytest.fixture
def in_a_fresh_folder(tmp_path, monkeypatch):
    """The scripts' relative paths (./RESULTS, ./weight) resolve in tmp_path; the network is the stand-in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(model.backbone.BACKBONES, "resnet34", StandInBackbone)
    one_epoch = train.build_trainer

    def build_trainer(opt, devices, **kwargs):
        return one_epoch(opt, devices, **{**kwargs, "max_epochs": 1})

    monkeypatch.setattr(train, "build_trainer", build_trainer)
    (tmp_path / "weight").mkdir()
    for name in ("cvusa", "cvact"):  # published format, paper sizes
        net = CrossViewNet()
        torch.save({"last_epoch": 99, "best_acc": 50.0, "count": 7, "retrieval_model_dict": net.state_dict(),
                    "optimizer_dict": {}}, tmp_path / "weight" / f"{name}.pth")
    return tmp_path


def run(line, world):
    return train.main(line.format(cvusa=world / "CVUSA", cvact=world / "CVACT").split())


def only_run_folder(results):
    folders = [p for p in results.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


@pytest.mark.parametrize("line", [TRAIN_CVUSA, TRAIN_CVACT], ids=["train_cvusa", "train_cvact"])
def test_the_authors_training_command_lines_train_with_their_settings(world, in_a_fresh_folder, line):
    assert run(line, world) == 0
    run_dir = only_run_folder(in_a_fresh_folder / "RESULTS")
    options = json.loads((run_dir / "options.json").read_text())
    assert (options["n_epochs"], options["batch_size"], options["batch_size_val"]) == (300, 32, 32)
    assert (options["sat_size_h"], options["grd_size_w"], options["sa_num"], options["no_fc"]) == (256, 512, 8, False)
    assert options["CVACT"] == ("--CVACT" in line)
    assert (run_dir / "best.ckpt").is_file() and (run_dir / "last.ckpt").is_file()
    assert "epoch 0 validation, 5 pairs" in (run_dir / "log.txt").read_text()


@pytest.mark.parametrize(("line", "dataset"), [(TEST_CVUSA, "CVUSA"), (TEST_CVACT, "CVACT")],
                         ids=["test_cvusa", "test_cvact"])
def test_the_authors_test_command_lines_evaluate_the_published_weights(world, in_a_fresh_folder, line, dataset):
    assert run(line, world) == 0
    run_dir = only_run_folder(in_a_fresh_folder / "RESULTS")
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["dataset"], results["split"], results["num"]) == (dataset, "val", 5)
    assert results["checkpoint"] == str(in_a_fresh_folder / "weight" / f"{dataset.lower()}.pth")
    assert "accepted but unused here: --n_epochs 300" in (run_dir / "log.txt").read_text()
