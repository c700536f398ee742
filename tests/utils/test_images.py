import cv2
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from tests.utils.test_figures import assert_readable_png
from utils.images import ImageReadError, plot_pair, read_rgb, to_chw_tensor, to_model_range


def test_read_rgb_converts_opencv_bgr_to_rgb(tmp_path):
    path = tmp_path / "red.png"
    red_bgr = np.zeros((8, 16, 3), np.uint8)
    red_bgr[..., 2] = 255
    cv2.imwrite(str(path), red_bgr)
    image = read_rgb(path)
    assert image.dtype == np.uint8 and image.shape == (8, 16, 3)
    assert (image[..., 0] == 255).all() and (image[..., 1:] == 0).all()


def test_read_rgb_keeps_pixels_of_the_configured_size(tmp_path):
    path = tmp_path / "noise.png"
    bgr = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(path), bgr)
    np.testing.assert_array_equal(read_rgb(path, (8, 16)), bgr[..., ::-1])


def test_read_rgb_resizes_other_sizes_with_area_interpolation(tmp_path):
    path = tmp_path / "big.png"
    bgr = np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(path), bgr)
    image = read_rgb(path, (10, 30))
    assert image.shape == (10, 30, 3)
    np.testing.assert_array_equal(image, cv2.resize(bgr, (30, 10), interpolation=cv2.INTER_AREA)[..., ::-1])


def test_read_rgb_reads_grayscale_files_as_three_channels(tmp_path):
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), np.full((4, 4), 7, np.uint8))
    assert (read_rgb(path) == 7).all() and read_rgb(path).shape == (4, 4, 3)


def test_missing_image_error_names_the_path(tmp_path):
    path = tmp_path / "absent.jpg"
    with pytest.raises(ImageReadError, match=r"absent\.jpg: file does not exist") as error:
        read_rgb(path)
    assert error.value.path == str(path)


def test_undecodable_image_error_names_the_path(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"broken\.jpg: not a decodable image"):
        read_rgb(path)


def test_image_read_error_rebuilds_from_its_message_alone():
    # a DataLoader worker re-raises an exception as type(error)(message) in the main process
    assert str(ImageReadError("worker traceback")) == "worker traceback"
    assert isinstance(ImageReadError("x"), OSError)


def test_to_chw_tensor_keeps_uint8_and_moves_channels_first():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    tensor = to_chw_tensor(image)
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 2, 3) and tensor.is_contiguous()
    assert tensor[1, 0, 2] == image[0, 2, 1]


def test_to_model_range_maps_0_255_exactly_to_minus_one_one():
    scaled = to_model_range(torch.tensor([[0, 255], [51, 204]], dtype=torch.uint8))
    assert scaled.dtype == torch.float32
    assert scaled[0, 0].item() == -1.0 and scaled[0, 1].item() == 1.0
    torch.testing.assert_close(scaled[1], torch.tensor([-0.6, 0.6]))


@pytest.mark.parametrize("shape", [(256,), (2, 3, 5, 7), (1, 3, 1, 1), (0, 3, 4, 4), (3, 4, 9)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_to_model_range_gives_the_bits_of_the_authors_float_formula(shape, contiguous):
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (*shape[:-1], 2 * shape[-1]), np.uint8))
    images = pixels[..., ::2] if not contiguous else pixels[..., : shape[-1]].contiguous()
    expected = torch.from_numpy(((images.numpy().astype(np.float32) / np.float32(255) - np.float32(0.5))
                                 / np.float32(0.5)).astype(np.float32))
    scaled = to_model_range(images)
    assert scaled.dtype == torch.float32 and scaled.shape == images.shape
    assert torch.equal(scaled, expected)  # bit for bit, not approximately


def test_to_model_range_refuses_images_already_scaled():
    with pytest.raises(TypeError, match="uint8"):
        to_model_range(torch.zeros(3, 2, 2))


def test_plot_pair_draws_both_views(tmp_path):
    sat = torch.zeros(3, 16, 16, dtype=torch.uint8)
    grd = torch.full((3, 8, 32), 255, dtype=torch.uint8)
    figure = plot_pair(sat, grd, title="pair")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    figure.savefig(tmp_path / "pair.png")
    image = assert_readable_png(tmp_path / "pair.png", min_bytes=2_000)  # a black and a white image
    assert image.shape[1] > image.shape[0]
