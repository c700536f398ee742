"""VIGOR in its real layout: hand-written cities with the official file names and 13-column label lines."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset.datamodule import VIGORDataModule
from dataset.errors import DatasetError
from dataset.vigor import CITIES, MODES, SPLITS, VIGOR, panorama_latlon, satellite_latlon
from tests.conftest import write_image

# Per city: its tiles (lat, lon), and its panoramas: (id, lat, lon, [four tile numbers, positive first], test?)
FAKE_CITIES = {
    "Chicago": ([(41.8801234, -87.6301234), (41.8804567, -87.6301234), (41.8801234, -87.6304567)],
                [("chiA-pano_00000000001", 41.880201, -87.630212, [0, 1, 2, 0], False),
                 ("chiB-pano_00000000002", 41.880402, -87.630355, [1, 0, 2, 0], True)]),
    "NewYork": ([(40.7501111, -73.9901111), (40.7504444, -73.9901111)],
                [("nyA-pano_000000000003", 40.750222, -73.990199, [0, 1, 1, 0], False),
                 ("nyB-pano_000000000004", 40.750401, -73.990101, [1, 0, 0, 1], True),
                 ("nyC-pano_000000000005", 40.750111, -73.990122, [0, 1, 0, 1], False)]),
    "SanFrancisco": ([(37.7701000, -122.4101000)], [("sfA-pano_000000000006", 37.770111, -122.410222, [0, 0, 0, 0],
                                                      True)]),
    "Seattle": ([(47.6001000, -122.3301000), (47.6003000, -122.3301000)],
                [("seA-pano_000000000007", 47.600201, -122.330111, [1, 0, 1, 0], False)]),
}
SAT, GRD = (16, 16), (8, 32)


def tile_name(lat: float, lon: float) -> str:
    return f"satellite_{lat:.7f}_{lon:.7f}.png"


def pano_name(pano_id: str, lat: float, lon: float) -> str:
    return f"{pano_id},{lat:.6f},{lon:.6f},.jpg"


def label_line(city: str, pano: tuple) -> str:
    tiles = FAKE_CITIES[city][0]
    pano_id, lat, lon, labels, _ = pano
    fields = [pano_name(pano_id, lat, lon)]
    for k, tile in enumerate(labels):
        fields += [tile_name(*tiles[tile]), f"{10.5 * k - 3:.4f}", f"{-2.25 * k:.4f}"]
    return " ".join(fields) + "\n"


def make_fake_vigor(root: Path) -> Path:
    """The four cities, their images (small, the dataset resizes) and all four split files of each."""
    for city, (tiles, panoramas) in FAKE_CITIES.items():
        for lat, lon in tiles:
            name = tile_name(lat, lon)
            write_image(root / city / "satellite" / name, (20, 20), seed=zlib.crc32(name.encode()))
        for pano_id, lat, lon, _, _ in panoramas:
            path = root / city / "panorama" / pano_name(pano_id, lat, lon)
            write_image(path, (16, 32), seed=zlib.crc32(pano_id.encode()))
        splits = root / "splits" / city
        splits.mkdir(parents=True)
        (splits / "satellite_list.txt").write_text("".join(tile_name(*tile) + "\n" for tile in tiles))
        lines = [(label_line(city, pano), pano[4]) for pano in panoramas]
        (splits / "pano_label_balanced.txt").write_text("".join(line for line, _ in lines))
        (splits / "same_area_balanced_train.txt").write_text("".join(line for line, test in lines if not test))
        (splits / "same_area_balanced_test.txt").write_text("".join(line for line, test in lines if test) + "\n")
    return root


@pytest.fixture
def vigor_root(tmp_path: Path) -> Path:
    return make_fake_vigor(tmp_path / "VIGOR")


def expected_split(cities: tuple[str, ...], test: bool | None) -> tuple[list[str], list[list[int]]]:
    """Panorama names and gallery indices of their four tiles, by walking the cities in order."""
    offsets, offset = {}, 0
    for city in cities:
        offsets[city] = offset
        offset += len(FAKE_CITIES[city][0])
    names, labels = [], []
    for city in cities:
        for pano in FAKE_CITIES[city][1]:
            if test is None or pano[4] == test:
                names.append(pano_name(*pano[:3]))
                labels.append([offsets[city] + tile for tile in pano[3]])
    return names, labels


@pytest.mark.parametrize(("mode", "split", "cities", "test"), [
    ("same", "train", CITIES, False),
    ("same", "test", CITIES, True),
    ("cross", "train", ("NewYork", "Seattle"), None),
    ("cross", "test", ("SanFrancisco", "Chicago"), None),
])
def test_each_mode_reads_its_cities_labels_and_gallery(vigor_root, mode, split, cities, test):
    dataset = VIGOR(vigor_root, split, mode, SAT, GRD)
    names, labels = expected_split(cities, test)
    assert dataset.cities == cities and dataset.ids == names
    np.testing.assert_array_equal(dataset.labels, labels)
    gallery = dataset.gallery
    assert gallery.ids == [tile_name(*tile) for city in cities for tile in FAKE_CITIES[city][0]]
    assert gallery.paths[0] == str(vigor_root / cities[0] / "satellite" / gallery.ids[0])
    np.testing.assert_allclose(gallery.latlon, [tile for city in cities for tile in FAKE_CITIES[city][0]])
    np.testing.assert_allclose(dataset.latlon, [panorama_latlon(name) for name in names])
    np.testing.assert_allclose(dataset.delta[0], [[10.5 * k - 3, -2.25 * k] for k in range(4)])


def test_a_training_sample_holds_the_positive_tile_and_an_evaluation_sample_the_panorama_alone(vigor_root):
    train = VIGOR(vigor_root, "train", "same", SAT, GRD)
    sample = train[1]
    assert set(sample) == {"sat", "grd", "index", "id", "positive", "semi_positives", "latlon", "delta"}
    assert sample["sat"].shape == (3, *SAT) and sample["grd"].shape == (3, *GRD) and sample["grd"].dtype == torch.uint8
    assert torch.equal(sample["sat"], train.gallery[sample["positive"]]["sat"])
    assert sample["semi_positives"].tolist() == train.labels[1, 1:].tolist() and sample["index"] == 1
    assert sample["latlon"].dtype == torch.float64 and sample["delta"].shape == (4, 2)
    test = VIGOR(vigor_root, "test", "same", SAT, GRD)
    assert "sat" not in test[0] and test.gallery[0]["latlon"].tolist() == list(FAKE_CITIES["Chicago"][0][0])
    figure = train.plot(test[0] | {"positive": 2})
    assert len(figure.axes) == 2


def test_names_give_their_positions():
    assert satellite_latlon("satellite_41.8756461_-87.6247906.png") == (41.8756461, -87.6247906)
    assert panorama_latlon("-Ldh6AF8g_OYk0t6ZXQU9Bw,41.875709,-87.624637,.jpg") == (41.875709, -87.624637)
    for bad in ("satellite_41.8_-87.6_x.png", "tile_1_2.png", "satellite_a_b.png", "satellite_91_0.png"):
        with pytest.raises(ValueError, match="satellite_<lat>_<lon>"):
            satellite_latlon(bad)
    for bad in ("pano.jpg", "id,1,2.jpg", "id,x,2,.jpg", "id,1,200,.jpg"):
        with pytest.raises(ValueError, match="<panoid>,<lat>,<lon>"):
            panorama_latlon(bad)


def break_city_folder(root: Path) -> str:
    (root / "Seattle" / "panorama").rename(root / "Seattle_panoramas")
    for path in (root / "Seattle" / "satellite").iterdir():
        path.unlink()
    (root / "Seattle" / "satellite").rmdir()
    (root / "Seattle").rmdir()
    return r"VIGOR city folder .*Seattle does not exist; expected VIGOR/<City>/panorama"


def drop_split_file(root: Path) -> str:
    (root / "splits" / "NewYork" / "same_area_balanced_train.txt").unlink()
    return r"split file .*NewYork/same_area_balanced_train\.txt does not exist"


def cut_a_column(root: Path) -> str:
    path = root / "splits" / "Chicago" / "same_area_balanced_train.txt"
    path.write_text(path.read_text().rsplit(" ", 1)[0] + "\n")
    return r"Chicago/same_area_balanced_train\.txt line 1: expected 13 columns.*got 12"


def unlisted_tile(root: Path) -> str:
    path = root / "splits" / "NewYork" / "satellite_list.txt"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    return r"NewYork/same_area_balanced_train\.txt line 1: tile satellite_40\.7504444_-73\.9901111\.png is not in"


def missing_panorama(root: Path) -> str:
    path = root / "Seattle" / "panorama" / pano_name(*FAKE_CITIES["Seattle"][1][0][:3])
    path.unlink()
    return r"1 of 4 panoramas of the VIGOR same-area train split are missing: .*seA-pano_000000000007"


def missing_tile(root: Path) -> str:
    (root / "Chicago" / "satellite" / tile_name(*FAKE_CITIES["Chicago"][0][2])).unlink()
    return r"1 of 8 satellite images .* are missing: .*Chicago/satellite/satellite_41\.8801234_-87\.6304567\.png"


def bad_panorama_name(root: Path) -> str:
    path = root / "splits" / "Seattle" / "same_area_balanced_train.txt"
    path.write_text(path.read_text().replace(",47.600201,-122.330111,.jpg", "_47.600201.jpg", 1))
    return r"Seattle/same_area_balanced_train\.txt line 1: expected <panoid>,<lat>,<lon>,\.jpg"


@pytest.mark.parametrize("case", [break_city_folder, drop_split_file, cut_a_column, unlisted_tile, missing_panorama,
                                  missing_tile, bad_panorama_name])
def test_a_broken_layout_is_named_in_one_line_before_training(vigor_root, case):
    message = case(vigor_root)
    with pytest.raises(DatasetError, match=message) as error:
        VIGOR(vigor_root, "train", "same", SAT, GRD)
    assert "\n" not in str(error.value)


def test_a_missing_root_and_a_wrong_mode_are_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"VIGOR root .*nowhere is not a directory"):
        VIGOR(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="mode must be one of same, cross"):
        VIGOR(tmp_path, mode="diagonal")


def test_the_data_module_evaluates_queries_and_gallery_apart_and_trains_without_conflicts(vigor_root):
    module = VIGORDataModule(vigor_root, "same", batch_size=3, batch_size_val=2, num_workers=0, sat_size=SAT,
                             grd_size=GRD, seed=3)
    module.setup("fit")
    queries, gallery = module.val_dataloader()
    assert len(queries.dataset) == 3 and len(gallery.dataset) == 8 and module.gallery is module.val_dataset.gallery
    assert set(next(iter(gallery))) == {"sat", "index", "id", "latlon"}
    assert "sat" not in next(iter(queries))
    batches = list(module.train_dataloader())
    indices = sorted(i for batch in batches for i in batch["index"].tolist())
    assert indices == list(range(len(module.train_dataset)))
    for batch in batches:
        tiles = [set(label) for label in module.train_dataset.labels[batch["index"].numpy()]]
        positives = batch["positive"].tolist()
        assert len(set(positives)) == len(positives)
        assert all(positive not in tiles[j] for i, positive in enumerate(positives)
                   for j in range(len(tiles)) if j != i)


@pytest.mark.parametrize("mode", MODES)
def test_cached_samples_equal_decoded_ones_for_pairs_queries_and_gallery(vigor_root, tmp_path, mode):
    for split in SPLITS:
        decoded = VIGOR(vigor_root, split, mode, SAT, GRD)
        cached = VIGOR(vigor_root, split, mode, SAT, GRD, cache_dir=tmp_path / "cache")
        samples = [*zip(decoded, cached, strict=True), *zip(decoded.gallery, cached.gallery, strict=True)]
        for plain, from_cache in samples:
            assert plain.keys() == from_cache.keys()
            for key in ("sat", "grd"):
                if key in plain:
                    assert torch.equal(plain[key], from_cache[key]), (split, key, plain["index"])
    names = sorted(path.name.rsplit("-", 2)[0] for path in (tmp_path / "cache").glob("*.cache"))
    cities = {"same": ["Chicago+NewYork+SanFrancisco+Seattle"], "cross": ["NewYork+Seattle", "SanFrancisco+Chicago"]}
    assert names == sorted([f"VIGOR-{mode}-test-panorama", f"VIGOR-{mode}-train-panorama",
                            *[f"VIGOR-{c}-satellite" for c in cities[mode]]])
