"""Limited field of view and unknown orientation: DSM's crop, fixed at evaluation, nothing at 360 and 0."""

import numpy as np
import pytest
import torch

from dataset.datamodule import CVUSADataModule
from dataset.views import LimitedFieldOfView
from utils.images import crop_field_of_view, field_of_view_width

SAT, GRD = (64, 64), (32, 128)


def dsm_crop(image: np.ndarray, fov: float, shift: int) -> np.ndarray:
    """DSM's limited field of view (generate_test_data_cvact.py of its repository), on an H x W x C image."""
    width = image.shape[1]
    grd_width = int(fov / 360 * width)
    j = np.arange(0, width)
    return image[:, ((j - shift) % width)[:grd_width], :]


def numbered_panorama(width: int = 128) -> torch.Tensor:
    """A uint8 CHW panorama whose every column holds its own number (modulo 256)."""
    return (torch.arange(width) % 256).to(torch.uint8).expand(3, 4, width).clone()


@pytest.mark.parametrize("width", [512, 128, 100, 384, 616])
@pytest.mark.parametrize("fov", [360, 180, 120, 90, 70, 45, 1])
@pytest.mark.parametrize("turn", [0, 30, 100.5, 180, 291.3, 359.9])
def test_the_crop_keeps_dsms_columns(width, fov, turn):
    panorama = numbered_panorama(width)
    crop = crop_field_of_view(panorama, fov, turn)
    shift = int(turn * width / 360)  # DSM: int(a * W * noise / 360), the turn being a * noise degrees
    expected = dsm_crop(np.asarray(panorama.permute(1, 2, 0)), fov, shift)
    assert crop.dtype == torch.uint8 and crop.shape == (3, 4, max(1, expected.shape[1]))
    if expected.shape[1]:
        np.testing.assert_array_equal(crop.permute(1, 2, 0).numpy(), expected)


def test_the_issues_worked_examples():
    columns = torch.arange(512)[None]  # one row holding its columns' numbers
    crop = crop_field_of_view(columns, 90, 30)  # a shift of 42 columns: from 470 round to 85
    assert crop[0].tolist() == [*range(470, 512), *range(0, 86)]
    assert crop_field_of_view(columns, 70, 0).shape[-1] == 99


def test_widths_follow_the_field_of_view():
    assert [field_of_view_width(512, fov) for fov in (360, 180, 90, 70, 120, 0.1)] == [512, 256, 128, 99, 170, 1]


def test_without_a_limit_or_a_turn_the_panorama_is_left_alone():
    panorama = numbered_panorama()
    sample = LimitedFieldOfView(360, 0)({"grd": panorama, "index": 3})
    assert sample["grd"] is panorama and sample["turn_deg"] == 0.0


def test_evaluation_draws_are_fixed_by_seed_and_index_training_draws_by_seed_epoch_and_index():
    fixed = LimitedFieldOfView(90, 360, seed=10)
    turns = [fixed.turn_deg(index) for index in range(50)]
    assert turns == [LimitedFieldOfView(90, 360, seed=10).turn_deg(index) for index in range(50)]
    assert turns != [LimitedFieldOfView(90, 360, seed=11).turn_deg(index) for index in range(50)]
    assert all(0 <= turn < 360 for turn in turns) and max(turns) - min(turns) > 180
    assert all(0 <= LimitedFieldOfView(90, 20, seed=1).turn_deg(index) < 20 for index in range(50))
    epochs = [[fixed.turn_deg(3, epoch) for epoch in range(5)] for _ in range(2)]
    assert len(set(epochs[0])) == 5 and epochs[0] == epochs[1]  # a new turn each epoch, the same on every call
    assert turns[3] not in epochs[0]  # training's draws are not evaluation's


@pytest.mark.parametrize(("fov", "noise"), [(0, 0), (361, 0), (90, -1), (90, 361)])
def test_values_outside_the_circle_are_refused(fov, noise):
    with pytest.raises(ValueError, match="fov|orientation_noise"):
        LimitedFieldOfView(fov, noise)


def module(root, **views) -> CVUSADataModule:
    return CVUSADataModule(root, batch_size=3, batch_size_val=2, num_workers=0, sat_size=SAT, grd_size=GRD, **views)


def test_the_data_module_crops_evaluation_alike_every_time_and_360_0_is_no_flag(tiny_world):
    root = tiny_world / "CVUSA"
    plain, full = module(root), module(root, fov=360, orientation_noise=0, seed=4)
    limited, again, other = (module(root, fov=90, orientation_noise=360, seed=seed) for seed in (10, 10, 11))
    for datamodule in (plain, full, limited, again, other):
        datamodule.setup("fit")
    assert full.view("val") is None and full.view("train") is None
    for first, second in zip(plain.val_dataloader(), full.val_dataloader(), strict=True):
        assert torch.equal(first["grd"], second["grd"]) and torch.equal(first["sat"], second["sat"])
    crops = [torch.cat([batch["grd"] for batch in datamodule.val_dataloader()]) for datamodule in
             (limited, again, other)]
    assert crops[0].shape[-1] == 32 and torch.equal(crops[0], crops[1]) and not torch.equal(crops[0], crops[2])
    turns = torch.cat([batch["turn_deg"] for batch in limited.val_dataloader()])
    panoramas = torch.cat([batch["grd"] for batch in plain.val_dataloader()])
    for panorama, crop, turn in zip(panoramas, crops[0], turns.tolist(), strict=True):
        assert torch.equal(crop, crop_field_of_view(panorama, 90, turn))
    epochs = []
    for epoch in (0, 1, 1):
        loader = limited.train_dataloader()
        loader.batch_sampler.sampler.set_epoch(epoch)  # as Lightning does at the start of every epoch
        epochs.append({int(index): float(turn) for batch in loader
                       for index, turn in zip(batch["index"], batch["turn_deg"], strict=True)})
    assert epochs[0] != epochs[1] and epochs[1] == epochs[2]  # a new turn each epoch, the same for the same one
