import logging
import os
import pickle
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch

from dataset.datamodule import CVACTDataModule, CVUSADataModule
from tests.conftest import write_image
from tests.helpers import REPO_ROOT, offline_env
from utils import image_cache
from utils.image_cache import CachedImages, DecodedImages, cache_file_name, image_source

SIZE = (24, 40)


@pytest.fixture
def images(tmp_path) -> list[str]:
    """Twelve images of mixed formats and sizes (some resized to SIZE, some already at it)."""
    paths = []
    for number in range(12):
        suffix = (".jpg", ".png")[number % 2]
        size = SIZE if number % 3 == 0 else (37 + number, 50 + 3 * number)
        path = tmp_path / "images" / f"{number:03d}{suffix}"
        write_image(path, size, seed=number)
        paths.append(str(path))
    return paths


@pytest.fixture
def cache_log(caplog):
    caplog.set_level(logging.INFO, logger="cvgl")
    logger = logging.getLogger("cvgl")
    propagate, logger.propagate = logger.propagate, True
    yield caplog
    logger.propagate = propagate


def cache_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("cache ")]


def assert_same_images(source, paths):
    decoded = DecodedImages(paths, SIZE)
    assert len(source) == len(decoded)
    for index in range(len(decoded)):
        image = source[index]
        assert image.dtype == torch.uint8 and image.shape == (3, *SIZE)
        assert torch.equal(image, decoded[index]), index


def test_a_cache_gives_the_decoded_images_and_a_second_open_decodes_nothing(images, tmp_path, cache_log,
                                                                           monkeypatch):
    path = tmp_path / "cache" / "c.cache"
    assert_same_images(CachedImages(images, SIZE, path), images)
    assert cache_lines(cache_log)[0] == (f"cache {path}: no cache yet; decoding 12 images at 24x40 once")
    cache_log.clear()

    def no_decoding(*args):
        raise AssertionError("decoded an image although the cache holds it")

    monkeypatch.setattr(image_cache, "read_rgb", no_decoding)
    reopened = CachedImages(images, SIZE, path)
    assert cache_lines(cache_log) == []
    decoded = [reopened[i] for i in range(len(images))]
    monkeypatch.undo()
    assert all(torch.equal(a, b) for a, b in zip(decoded, DecodedImages(images, SIZE), strict=True))
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.cache", "c.cache.lock"]


@pytest.mark.slow
def test_equal_batches_with_and_without_the_cache_through_worker_processes(fake_cvusa_root, fake_cvact_root,
                                                                          tmp_path):
    for make in (
        lambda cache: CVUSADataModule(fake_cvusa_root, batch_size=2, batch_size_val=2, num_workers=2,
                                      sat_size=(64, 64), grd_size=(32, 128), cache_dir=cache),
        lambda cache: CVACTDataModule(fake_cvact_root, batch_size=2, batch_size_val=2, num_workers=2,
                                      sat_size=(48, 48), grd_size=(16, 64), eval_split="test", cache_dir=cache),
    ):
        batches = []
        for cache_dir in (None, tmp_path / "cache", tmp_path / "cache"):
            datamodule = make(cache_dir)
            datamodule.setup()
            torch.manual_seed(3)
            loaders = (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader())
            batches.append([[batch["sat"], batch["grd"], batch["index"]] for loader in loaders for batch in loader])
        for cached in batches[1:]:
            assert len(cached) == len(batches[0])
            for plain, from_cache in zip(batches[0], cached, strict=True):
                assert all(torch.equal(a, b) for a, b in zip(plain, from_cache, strict=True))
    names = sorted(p.name for p in (tmp_path / "cache").glob("*.cache"))
    assert [name.split("-")[:3] for name in names] == [
        ["CVACT", "test", "grd"], ["CVACT", "test", "sat"], ["CVACT", "train", "grd"], ["CVACT", "train", "sat"],
        ["CVACT", "val", "grd"], ["CVACT", "val", "sat"],
        ["CVUSA", "train", "grd"], ["CVUSA", "train", "sat"], ["CVUSA", "val", "grd"], ["CVUSA", "val", "sat"],
    ]


def test_the_file_name_tells_roots_splits_views_and_sizes_apart(tmp_path):
    name = cache_file_name("CVUSA-train-sat", tmp_path / "a", (256, 256))
    assert name.startswith("CVUSA-train-sat-256x256-") and name.endswith(".cache")
    assert name != cache_file_name("CVUSA-train-sat", tmp_path / "b", (256, 256))
    assert name != cache_file_name("CVUSA-train-sat", tmp_path / "a", (128, 256))
    assert name == cache_file_name("CVUSA-train-sat", str(tmp_path / "a"), [256, 256])
    assert isinstance(image_source(["x"], SIZE, None, "label", tmp_path), DecodedImages)


def touch_later(path: str) -> None:
    later = os.stat(path).st_mtime_ns + 10**9  # a later time even where the clock is coarse
    os.utime(path, ns=(later, later))


def rewrite(path: str, seed: int) -> None:
    size = os.path.getsize(path)
    write_image(Path(path), (90, 90), seed=seed)
    assert os.path.getsize(path) != size


@pytest.mark.parametrize(
    ("index", "change", "reason"),
    [(4, touch_later, "was modified after the cache was built"), (5, lambda p: rewrite(p, 98), "changed size")],
    ids=["touched", "rewritten"],
)
def test_a_changed_image_rebuilds_the_cache_with_one_line_naming_it(images, tmp_path, cache_log, index, change,
                                                                    reason):
    path = tmp_path / "c.cache"
    CachedImages(images, SIZE, path)
    change(images[index])
    cache_log.clear()
    rebuilt = CachedImages(images, SIZE, path)
    building = [line for line in cache_lines(cache_log) if "rebuilding" in line]
    assert len(building) == 1 and f"{images[index]} {reason}" in building[0]
    assert_same_images(rebuilt, images)


def test_another_image_list_rebuilds_the_cache(images, tmp_path, cache_log):
    path = tmp_path / "c.cache"
    CachedImages(images, SIZE, path)
    cache_log.clear()
    assert_same_images(CachedImages(images[:-1], SIZE, path), images[:-1])
    assert "built from 12 images, the dataset now lists 11" in cache_lines(cache_log)[0]
    CachedImages(images, SIZE, path)
    cache_log.clear()
    swapped = [images[1], images[0], *images[2:]]
    assert_same_images(CachedImages(swapped, SIZE, path), swapped)
    assert "image list differs" in cache_lines(cache_log)[0]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: os.truncate(path, os.path.getsize(path) - 1), "truncated or overlong"),
        (lambda path: os.truncate(path, 100), "truncated"),
        (lambda path: os.truncate(path, 3), "not a cache file"),
        (lambda path: path.write_bytes(b"CVGLIMG1" + (10).to_bytes(8, "little") + b"{not json!"), "unreadable header"),
        (lambda path: path.write_bytes(b"CVGLIMG1" + (13).to_bytes(8, "little") + b'{"version":0}'), "another version"),
    ],
    ids=["one-byte-short", "header-cut", "magic-cut", "garbled-header", "old-version"],
)
def test_a_truncated_or_garbled_cache_is_rebuilt(images, tmp_path, cache_log, damage, reason):
    path = tmp_path / "c.cache"
    CachedImages(images, SIZE, path)
    damage(path)
    cache_log.clear()
    assert_same_images(CachedImages(images, SIZE, path), images)
    assert reason in cache_lines(cache_log)[0] and "rebuilding" in cache_lines(cache_log)[0]


def test_a_cache_of_another_size_is_rebuilt(images, tmp_path, cache_log):
    path = tmp_path / "c.cache"
    CachedImages(images, (SIZE[0] + 1, SIZE[1]), path)
    cache_log.clear()
    assert_same_images(CachedImages(images, SIZE, path), images)
    assert "holds 25x40 images, expected 24x40; rebuilding" in cache_lines(cache_log)[0]


def test_corrupt_pixels_never_reach_the_model_and_the_next_run_rebuilds(images, tmp_path, cache_log):
    path = tmp_path / "c.cache"
    CachedImages(images, SIZE, path)
    image_bytes = 3 * SIZE[0] * SIZE[1]
    with open(path, "r+b") as cache:  # flip one byte of image 7, keeping the file's length
        cache.seek(os.path.getsize(path) - (len(images) - 7) * image_bytes + 123)
        byte = cache.read(1)
        cache.seek(-1, os.SEEK_CUR)
        cache.write(bytes([byte[0] ^ 0xFF]))
    cache_log.clear()
    opened = CachedImages(images, SIZE, path)
    assert cache_lines(cache_log) == []  # the length and the manifest are right: only the checksum tells
    assert_same_images(opened, images)
    warnings = [line for line in cache_lines(cache_log) if "CRC-32" in line]
    assert len(warnings) == 1 and "image 7" in warnings[0]
    cache_log.clear()
    rebuilt = CachedImages(images, SIZE, path)
    assert "an earlier run found a corrupt image (image 7" in cache_lines(cache_log)[0]
    assert not path.with_name("c.cache.corrupt").exists()
    assert all(zlib.crc32(rebuilt._pixels()[i]) == rebuilt._crcs[i] for i in range(len(images)))


def test_a_cache_travels_to_worker_processes_without_its_pixels(images, tmp_path):
    cached = CachedImages(images, SIZE, tmp_path / "c.cache")
    assert len(pickle.dumps(cached)) < 3 * SIZE[0] * SIZE[1]
    copy = pickle.loads(pickle.dumps(cached))
    assert copy._array is None
    assert_same_images(copy, images)


def test_a_cache_replaced_under_a_running_reader_is_refused(images, tmp_path):
    path = tmp_path / "c.cache"
    copy = pickle.loads(pickle.dumps(CachedImages(images, SIZE, path)))
    touch_later(images[0])
    CachedImages(images, SIZE, path)
    with pytest.raises(RuntimeError, match="was replaced while this run used it"):
        copy[0]


BUILD_SLOWLY = """
import sys, time
from utils import image_cache
decode = image_cache.read_rgb
image_cache.read_rgb = lambda *args: (time.sleep(0.05), decode(*args))[1]
image_cache.CachedImages(sys.argv[2:], (24, 40), sys.argv[1], workers=1)
"""


@pytest.mark.slow
def test_a_build_killed_mid_way_leaves_no_cache_and_the_next_one_finishes(images, tmp_path, cache_log):
    path = tmp_path / "c.cache"
    CachedImages(images[:5], SIZE, path)  # an older cache, of other images
    older = path.read_bytes()
    many = images * 20
    builder = subprocess.Popen([sys.executable, "-c", BUILD_SLOWLY, str(path), *many], env=offline_env(),
                               cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("c.cache.tmp-*")) and time.monotonic() < deadline and builder.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait()
    assert builder.returncode == -signal.SIGKILL
    assert list(tmp_path.glob("c.cache.tmp-*")), "the build was not under way when it was killed"
    assert path.read_bytes() == older  # the old cache is untouched: nothing half-written took its place
    cache_log.clear()
    finished = CachedImages(many, SIZE, path)
    assert "built from 5 images, the dataset now lists 240" in cache_lines(cache_log)[0]
    assert not list(tmp_path.glob("c.cache.tmp-*"))
    assert_same_images(finished, many)


@pytest.mark.slow
def test_processes_sharing_a_cache_directory_build_it_once(images, tmp_path):
    path = tmp_path / "c.cache"
    script = "import logging; logging.basicConfig(level=logging.INFO, format='%(message)s')\n" + BUILD_SLOWLY
    builders = [subprocess.Popen([sys.executable, "-c", script, str(path), *images], env=offline_env(),
                                 cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    logs = [builder.communicate(timeout=120)[1] for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0, 0]
    assert sum(log.count("no cache yet") for log in logs) == 1
    assert_same_images(CachedImages(images, SIZE, path), images)
