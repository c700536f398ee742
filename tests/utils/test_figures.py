import cv2
import pytest

from utils.figures import curve_max_k, new_figure, recall_curve_figure, save_figure


def assert_readable_png(path, min_bytes=5_000):
    """A PNG by its magic bytes, decodable, of some size, and not a single colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > min_bytes, (path, len(data))
    image = cv2.imread(str(path))
    assert image is not None and image.ndim == 3, path
    assert image.reshape(-1, 3).std(axis=0).max() > 10, path
    return image


def test_a_figure_is_saved_into_a_new_folder_without_leftovers(tmp_path):
    figure = new_figure(2, 1)
    figure.subplots().plot([0, 1], [1, 0])
    path = save_figure(figure, tmp_path / "new" / "plot.png")
    assert path == tmp_path / "new" / "plot.png"
    assert cv2.imread(str(path)) is not None and [p.name for p in path.parent.iterdir()] == ["plot.png"]


@pytest.mark.parametrize(("num", "log_scale"), [(150, False), (1000, False), (20_000, True)])
def test_the_recall_curve_marks_one_percent_of_the_gallery_and_goes_logarithmic_past_k_100(num, log_scale):
    ks = list(range(1, curve_max_k(num) + 1))
    curves = {direction: [min(100.0, 10.0 * k) for k in ks] for direction in ("p2s", "s2p")}
    axes = recall_curve_figure(ks, curves, num, "title").axes[0]
    assert axes.get_xscale() == ("log" if log_scale else "linear")
    vertical = [line for line in axes.get_lines() if line.get_linestyle() == "--"]
    assert len(vertical) == 1 and list(vertical[0].get_xdata()) == [0.01 * num, 0.01 * num]
    assert f"k = 1% of the gallery ({0.01 * num:g})" in [text.get_text() for text in axes.get_legend().get_texts()]
    chance = next(line for line in axes.get_lines() if line.get_label() == "chance (k / N)")
    assert list(chance.get_ydata()) == pytest.approx([100.0 * k / num for k in ks])


def test_a_gallery_under_100_has_no_one_percent_line():
    axes = recall_curve_figure(list(range(1, 11)), {"p2s": [50.0] * 10, "s2p": [50.0] * 10}, 50, "t").axes[0]
    assert not [line for line in axes.get_lines() if line.get_linestyle() == "--"]


def test_the_curve_runs_to_one_percent_of_the_gallery_but_at_least_to_ten():
    assert (curve_max_k(13), curve_max_k(7), curve_max_k(1500), curve_max_k(92802)) == (10, 7, 15, 929)
