import functools
import os

import numpy as np
import pytest
import scipy.io
import torch
from matplotlib.figure import Figure

from dataset.cvact import CVACT
from dataset.errors import DatasetError
from tests.utils.test_figures import assert_readable_png
from utils.images import ImageReadError

SAT, GRD = (64, 64), (32, 128)
# differing lengths, like the real panoIds, so that MATLAB's char matrix pads them with spaces
IDS = ("__-DFIFxvZBCn1873qkqXA", "-0aBc", "Zz9_abcdefgh", "q1", "X-y_z123", "abcdefghijklmnopqrstuv")
UTM = np.array([[690000.0 + 30.0 * number, 6090000.5 - 2.25 * number] for number in range(len(IDS))])


@pytest.fixture
def make_cvact(make_fake_cvact):
    """The conftest writer with this module's panoIds and positions (train 1-3, val 4-5, test 4-6)."""
    return functools.partial(make_fake_cvact, pano_ids=IDS, utm=UTM)


@pytest.fixture
def fake_cvact_root(make_cvact):
    return make_cvact()


@pytest.mark.parametrize(
    ("split", "positions"), [("train", [0, 1, 2]), ("val", [3, 4]), ("test", [3, 4, 5])], ids=["train", "val", "test"]
)
def test_splits_take_their_1_based_indices_from_the_mat_file(fake_cvact_root, split, positions):
    dataset = CVACT(fake_cvact_root, split, SAT, GRD)
    assert dataset.ids == [IDS[position] for position in positions]
    assert len(dataset) == len(positions)
    assert dataset.utm.dtype == np.float64 and dataset.utm.shape == (len(positions), 2)
    np.testing.assert_array_equal(dataset.utm, UTM[positions])


@pytest.mark.parametrize("index_dtype", [np.float64, np.int32, np.uint16, np.int64])
@pytest.mark.parametrize("index_shape", [(-1, 1), (1, -1), (-1,)], ids=["column", "row", "flat"])
def test_index_types_and_shapes_are_accepted(make_cvact, index_dtype, index_shape):
    root = make_cvact(train=(6, 1), index_dtype=index_dtype, index_shape=index_shape)
    assert CVACT(root, "train", SAT, GRD).ids == [IDS[5], IDS[0]]


@pytest.mark.parametrize("cell_ids", [False, True], ids=["char-matrix", "cell-array"])
def test_pano_ids_padded_with_spaces_or_in_a_cell_array_are_stripped(make_cvact, cell_ids):
    root = make_cvact(cell_ids=cell_ids)
    mat = scipy.io.loadmat(root / "ACT_data.mat")
    assert cell_ids or mat["panoIds"][3] == "q1" + " " * 20  # what scipy really hands over
    assert CVACT(root, "val", SAT, GRD).ids == ["q1", "X-y_z123"]


def test_one_image_split(make_cvact):
    root = make_cvact(val=(2,), index_dtype=np.uint8)
    dataset = CVACT(root, "val", SAT, GRD)
    assert dataset.ids == [IDS[1]] and dataset.utm.shape == (1, 2)
    assert dataset[0]["utm"].tolist() == UTM[1].tolist()


def test_sample_is_uint8_chw_with_index_id_and_float64_utm(fake_cvact_root):
    dataset = CVACT(fake_cvact_root, "test", SAT, GRD)
    sample = dataset[2]
    assert set(sample) == {"sat", "grd", "index", "id", "utm"}
    assert sample["sat"].shape == (3, *SAT) and sample["grd"].shape == (3, *GRD)
    assert sample["sat"].dtype == torch.uint8 and sample["grd"].dtype == torch.uint8
    assert (sample["index"], sample["id"]) == (2, IDS[5])
    assert sample["utm"].dtype == torch.float64 and sample["utm"].shape == (2,)
    assert sample["utm"].tolist() == UTM[5].tolist()
    assert dataset.sat_paths[2] == os.path.join(fake_cvact_root, "sat", f"{IDS[5]}_satView_polish.jpg")
    assert dataset.grd_paths[2] == os.path.join(fake_cvact_root, "grd", f"{IDS[5]}_grdView.jpg")


def test_images_are_resized_to_the_configured_size(fake_cvact_root):
    sample = CVACT(fake_cvact_root, "train", (40, 40), (20, 80))[0]
    assert sample["sat"].shape == (3, 40, 40) and sample["grd"].shape == (3, 20, 80)


def test_plot_returns_and_saves_a_figure(fake_cvact_root, tmp_path):
    dataset = CVACT(fake_cvact_root, "val", SAT, GRD)
    figure = dataset.plot(dataset[1], tmp_path / "pair.png")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    image = assert_readable_png(tmp_path / "pair.png")
    assert image.shape[1] > image.shape[0]  # the aerial image beside the wider panorama


def test_unknown_split_is_refused(fake_cvact_root):
    with pytest.raises(ValueError, match="'valAll'"):
        CVACT(fake_cvact_root, "valAll")


def test_missing_root_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"CVACT root .*nowhere is not a directory"):
        CVACT(tmp_path / "nowhere")


def test_missing_mat_file_is_named(fake_cvact_root):
    (fake_cvact_root / "ACT_data.mat").unlink()
    with pytest.raises(DatasetError, match=r"index file .*ACT_data\.mat does not exist; expected .*trainSet\.trainInd"):
        CVACT(fake_cvact_root)


def test_a_matlab_v73_file_is_named_with_how_to_resave_it(fake_cvact_root):
    # A v7.3 MAT-file is HDF5 behind MATLAB's 128-byte text header, which begins like this.
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Dec  3 06:53:00 2026 HDF5 schema 1.00 ."
    (fake_cvact_root / "ACT_data.mat").write_bytes(header.ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(DatasetError, match=r"ACT_data\.mat is a MATLAB v7\.3 \(HDF5\) file, which scipy cannot read; "
                                           r"re-save it as v7 .*'-v7'"):
        CVACT(fake_cvact_root)


def test_unreadable_mat_file_is_named(fake_cvact_root):
    (fake_cvact_root / "ACT_data.mat").write_bytes(b"no MATLAB here" * 20)
    with pytest.raises(DatasetError, match=r"ACT_data\.mat cannot be read as a MATLAB"):
        CVACT(fake_cvact_root)


@pytest.mark.parametrize(("removed", "split"), [("panoIds", "train"), ("utm", "val"), ("valSetAll", "test")])
def test_missing_field_is_named(make_cvact, removed, split):
    root = make_cvact(fields={removed: None})
    with pytest.raises(DatasetError, match=rf"ACT_data\.mat has no field {removed}(\.valInd)?;"):
        CVACT(root, split)


def test_struct_without_its_index_field_is_named(make_cvact):
    root = make_cvact(fields={"valSet": {"valIndex": np.array([[1]])}})
    with pytest.raises(DatasetError, match=r"has no field valSet\.valInd;"):
        CVACT(root, "val")
    assert len(CVACT(root, "train")) == 3  # other splits stay usable


def test_wrong_utm_shape_is_refused(make_cvact):
    root = make_cvact(fields={"utm": np.zeros((2, 6))})
    with pytest.raises(DatasetError, match=r"utm is a float64 array of shape \(2, 6\), expected .* \(6, 2\)"):
        CVACT(root)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ((1, 7), r"trainSet\.trainInd holds position 7 outside 1\.\.6"),
        ((0, 1), r"trainSet\.trainInd holds position 0 outside 1\.\.6"),
        ((1.5,), r"trainSet\.trainInd holds non-integer values"),
        ((), r"trainSet\.trainInd is empty"),
    ],
    ids=["too-large", "zero-based", "fractional", "empty"],
)
def test_bad_indices_are_refused(make_cvact, train, message):
    with pytest.raises(DatasetError, match=message):
        CVACT(make_cvact(train=train))


def test_text_indices_are_refused(make_cvact):
    root = make_cvact(fields={"trainSet": {"trainInd": np.array(["1"])}})
    with pytest.raises(DatasetError, match=r"trainSet\.trainInd is a <U1 array"):
        CVACT(root)


def test_missing_images_are_named_with_the_expected_layout(fake_cvact_root):
    missing = fake_cvact_root / "grd" / f"{IDS[4]}_grdView.jpg"
    missing.unlink()
    assert len(CVACT(fake_cvact_root, "train")) == 3  # only the split's own images are checked
    with pytest.raises(DatasetError) as error:
        CVACT(fake_cvact_root, "val")
    message = str(error.value)
    assert "1 of 4 images of the val split" in message and str(missing) in message
    assert "<panoId>_satView_polish.jpg" in message and "\n" not in message


def test_undecodable_image_raises_image_read_error_on_access(fake_cvact_root):
    broken = fake_cvact_root / "sat" / f"{IDS[0]}_satView_polish.jpg"
    broken.write_bytes(b"")
    with pytest.raises(ImageReadError, match=str(broken)):
        CVACT(fake_cvact_root, "train")[0]
