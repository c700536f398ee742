import os
import re

import cv2
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from dataset.cvusa import CVUSA
from dataset.errors import DatasetError
from tests.utils.test_figures import assert_readable_png
from utils.images import ImageReadError

SAT, GRD = (64, 64), (32, 128)


def test_splits_list_the_csv_pairs_in_order(fake_cvusa_root):
    train = CVUSA(fake_cvusa_root, "train", SAT, GRD)
    val = CVUSA(fake_cvusa_root, "val", SAT, GRD)
    assert train.ids == ["0000001", "0000002", "0000003", "0000004"]
    assert val.ids == ["0000005", "0000006", "0000007"]
    assert (len(train), len(val)) == (4, 3)
    assert not train.raw_layout
    assert train.sat_paths[0] == os.path.join(fake_cvusa_root, "sat", "0000001.jpg")
    assert train.grd_paths[0] == os.path.join(fake_cvusa_root, "grd", "0000001.png")


def test_sample_is_uint8_chw_rgb_with_index_and_id(fake_cvusa_root):
    dataset = CVUSA(fake_cvusa_root, "val", SAT, GRD)
    sample = dataset[2]
    assert set(sample) == {"sat", "grd", "index", "id"}
    assert sample["sat"].shape == (3, *SAT) and sample["grd"].shape == (3, *GRD)
    assert sample["sat"].dtype == torch.uint8 and sample["grd"].dtype == torch.uint8
    assert (sample["index"], sample["id"]) == (2, "0000007")
    written_bgr = cv2.imread(dataset.grd_paths[2])
    np.testing.assert_array_equal(sample["grd"].permute(1, 2, 0).numpy(), written_bgr[..., ::-1])
    assert dataset[-1]["index"] == 2
    with pytest.raises(IndexError):
        dataset[3]


def test_pure_red_images_come_out_in_channel_zero(fake_cvusa_root):
    red_bgr = np.zeros((*GRD, 3), np.uint8)
    red_bgr[..., 2] = 255
    cv2.imwrite(str(fake_cvusa_root / "grd" / "0000001.png"), red_bgr)
    cv2.imwrite(str(fake_cvusa_root / "sat" / "0000001.jpg"), np.zeros((*SAT, 3), np.uint8) + red_bgr[:1, :1])
    sample = CVUSA(fake_cvusa_root, "train", SAT, GRD)[0]
    assert (sample["grd"][0] == 255).all() and (sample["grd"][1:] == 0).all()
    assert (sample["sat"][0] >= 250).all() and (sample["sat"][1:] <= 5).all()  # JPEG is lossy


def test_images_of_another_size_are_resized_to_the_configured_one(fake_cvusa_root):
    cv2.imwrite(str(fake_cvusa_root / "sat" / "0000002.jpg"), np.zeros((100, 90, 3), np.uint8))
    cv2.imwrite(str(fake_cvusa_root / "grd" / "0000002.png"), np.zeros((20, 200, 3), np.uint8))
    sample = CVUSA(fake_cvusa_root, "train", SAT, GRD)[1]
    assert sample["sat"].shape == (3, *SAT) and sample["grd"].shape == (3, *GRD)
    assert CVUSA(fake_cvusa_root, "train", (32, 32), (16, 64))[0]["grd"].shape == (3, 16, 64)


def test_raw_download_layout_is_read_from_the_csv_paths(make_fake_cvusa):
    root = make_fake_cvusa(raw=True)
    dataset = CVUSA(root, "train", SAT, GRD)
    assert dataset.raw_layout
    assert dataset.sat_paths[0] == os.path.join(root, "bingmap", "19", "0000001.jpg")
    assert dataset.grd_paths[0] == os.path.join(root, "streetview", "panos", "0000001.jpg")
    assert dataset[0]["grd"].shape == (3, *GRD) and dataset.ids[0] == "0000001"


@pytest.mark.parametrize("raw", [False, True])
def test_subset_csv_with_two_part_paths(make_fake_cvusa, raw):
    root = make_fake_cvusa(train_ids=("input0044192", "input0000007"), val_ids=("input0000003",), raw=raw, subset=True)
    dataset = CVUSA(root, "train", SAT, GRD)
    assert dataset.ids == ["input0044192", "input0000007"]
    expected_sat = "bingmap/input0044192.png" if raw else "sat/input0044192.jpg"
    expected_grd = "streetview/input0044192.jpg" if raw else "grd/input0044192.png"
    assert dataset.sat_paths[0] == os.path.join(root, expected_sat)
    assert dataset.grd_paths[0] == os.path.join(root, expected_grd)
    assert dataset[0]["sat"].shape == (3, *SAT)


def test_one_pair_split_and_other_csv_names(fake_cvusa_root):
    (fake_cvusa_root / "splits" / "one.csv").write_text("bingmap/19/0000006.jpg,streetview/panos/0000006.jpg,x.png")
    dataset = CVUSA(fake_cvusa_root, "val", SAT, GRD, val_csv="one.csv")
    assert dataset.ids == ["0000006"] and len(dataset) == 1


def test_csv_blank_lines_crlf_and_byte_order_mark_are_accepted(fake_cvusa_root):
    path = fake_cvusa_root / "splits" / "val-19zl.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_text().replace("\n", "\r\n\r\n").encode())
    assert CVUSA(fake_cvusa_root, "val", SAT, GRD).ids == ["0000005", "0000006", "0000007"]


def test_transforms_receive_the_sample(fake_cvusa_root):
    dataset = CVUSA(fake_cvusa_root, "train", SAT, GRD, transforms=lambda sample: {**sample, "seen": True})
    assert dataset[0]["seen"]


def test_plot_returns_and_saves_a_figure(fake_cvusa_root, tmp_path):
    dataset = CVUSA(fake_cvusa_root, "train", SAT, GRD)
    figure = dataset.plot(dataset[0], tmp_path / "pair.png")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    image = assert_readable_png(tmp_path / "pair.png")
    assert image.shape[1] > image.shape[0]  # the aerial image beside the wider panorama


def test_unknown_split_is_refused(fake_cvusa_root):
    with pytest.raises(ValueError, match="'test'"):
        CVUSA(fake_cvusa_root, "test")


def test_missing_root_is_named(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(f"CVUSA root {tmp_path / 'nowhere'} is not a directory")):
        CVUSA(tmp_path / "nowhere")


def test_missing_split_file_is_named(fake_cvusa_root):
    (fake_cvusa_root / "splits" / "train-19zl.csv").unlink()
    with pytest.raises(DatasetError, match=r"split file .*splits/train-19zl\.csv does not exist"):
        CVUSA(fake_cvusa_root, "train")


def test_empty_split_file_is_refused(fake_cvusa_root):
    (fake_cvusa_root / "splits" / "val-19zl.csv").write_text("\n")
    with pytest.raises(DatasetError, match=r"val-19zl\.csv lists no image pairs"):
        CVUSA(fake_cvusa_root, "val")


@pytest.mark.parametrize("bad_line", ["bingmap/19/0000009.jpg", "bingmap/19/,streetview/panos/0000009.jpg", ",,"])
def test_malformed_csv_line_is_named_with_its_number(fake_cvusa_root, bad_line):
    path = fake_cvusa_root / "splits" / "val-19zl.csv"
    path.write_text(path.read_text() + bad_line + "\n")
    with pytest.raises(DatasetError, match=r"val-19zl\.csv line 4: expected 'aerial_path,panorama_path"):
        CVUSA(fake_cvusa_root, "val")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_split_file_is_named_with_what_to_do(fake_cvusa_root, encoding):
    path = fake_cvusa_root / "splits" / "val-19zl.csv"
    path.write_bytes(path.read_text().encode(encoding))  # utf-16 writes a byte order mark, the others do not
    with pytest.raises(DatasetError, match=r"val-19zl\.csv is UTF-16 text .*save it as UTF-8, for example with: iconv"):
        CVUSA(fake_cvusa_root, "val")


def test_a_header_row_is_named_not_taken_for_a_missing_image(fake_cvusa_root):
    path = fake_cvusa_root / "splits" / "val-19zl.csv"
    path.write_text("sat,grd,annotation\n" + path.read_text())
    with pytest.raises(DatasetError, match=r"val-19zl\.csv line 1: 'sat,grd,annotation' is a header row, which 19zl "
                                           r"split files do not have: remove it"):
        CVUSA(fake_cvusa_root, "val")


def test_missing_images_are_named_with_the_expected_layout(fake_cvusa_root):
    (fake_cvusa_root / "grd" / "0000003.png").unlink()
    with pytest.raises(DatasetError) as error:
        CVUSA(fake_cvusa_root, "train")
    message = str(error.value)
    assert f"1 of 8 images of {fake_cvusa_root / 'splits' / 'train-19zl.csv'} are missing" in message
    assert str(fake_cvusa_root / "grd" / "0000003.png") in message
    assert "sat/<id>.jpg" in message and "\n" not in message


def test_many_missing_images_are_cut_to_five_names(make_fake_cvusa):
    root = make_fake_cvusa(train_ids=[f"{number:07d}" for number in range(1, 9)], val_ids=("0000010",))
    for path in (root / "sat").glob("*.jpg"):
        path.unlink()
    with pytest.raises(DatasetError, match=r"8 of 16 images .* are missing: .*0000005\.jpg and 3 more;") as error:
        CVUSA(root, "train")
    assert "0000006.jpg" not in str(error.value)


def test_without_sat_and_grd_the_raw_paths_are_checked(fake_cvusa_root):
    (fake_cvusa_root / "sat").rename(fake_cvusa_root / "aerial")
    (fake_cvusa_root / "grd").rename(fake_cvusa_root / "ground")
    with pytest.raises(DatasetError, match=r"bingmap/19/0000001\.jpg.*or the raw download's paths"):
        CVUSA(fake_cvusa_root, "train")


def test_undecodable_image_raises_image_read_error_on_access(fake_cvusa_root):
    (fake_cvusa_root / "sat" / "0000002.jpg").write_bytes(b"truncated")
    dataset = CVUSA(fake_cvusa_root, "train", SAT, GRD)
    with pytest.raises(ImageReadError, match=r"sat/0000002\.jpg"):
        dataset[1]
