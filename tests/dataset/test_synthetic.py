"""The synthetic world: reproducible, written in CVUSA's and CVACT's exact layouts, views that agree."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from dataset import synthetic
from dataset.synthetic import generate, generate_vigor
from dataset.synthetic.render import render_aerial, render_panorama
from dataset.synthetic.world import BUILDING, CELL_M, GROUND, MIN_SPACING_M, REACH_M, SAT_FOOTPRINT_M, World, cells

NUM_TRAIN, NUM_VAL = 10, 6
SAT_SIZE, GRD_SIZE = (64, 64), (32, 128)
LINE_19ZL = re.compile(r"^bingmap/19/(\d{7})\.jpg,streetview/panos/\1\.jpg,streetview/annotations/\1\.png$")


def tiny_world(out_dir: Path, seed: int = 3) -> dict:
    return generate(out_dir, NUM_TRAIN, NUM_VAL, seed=seed, sat_size=SAT_SIZE, grd_size=GRD_SIZE, progress=False)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("synthetic")
    return out_dir, tiny_world(out_dir)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def split_ids(cvusa: Path, split: str) -> list[str]:
    lines = (cvusa / "splits" / f"{split}-19zl.csv").read_text().splitlines()
    matches = [LINE_19ZL.match(line) for line in lines]
    assert all(matches), lines
    return [match.group(1) for match in matches]


def load_mat(cvact: Path) -> dict:
    return scipy.io.loadmat(cvact / "ACT_data.mat")


def all_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_summary_counts_and_paths(written):
    out_dir, summary = written
    assert summary["num_train"] == NUM_TRAIN and summary["num_val"] == NUM_VAL
    assert Path(summary["cvusa_root"]) == out_dir / "CVUSA" and Path(summary["cvact_root"]) == out_dir / "CVACT"
    assert summary["sat_metres_per_pixel"] == pytest.approx(SAT_FOOTPRINT_M / SAT_SIZE[1])
    assert summary["map_metres_per_cell"] == CELL_M and summary["seconds"] > 0


def test_cvusa_layout_has_19zl_splits_and_every_image(written):
    cvusa = written[0] / "CVUSA"
    train, val = split_ids(cvusa, "train"), split_ids(cvusa, "val")
    assert train + val == [f"{n:07d}" for n in range(1, NUM_TRAIN + NUM_VAL + 1)]
    assert sorted(p.name for p in (cvusa / "sat").iterdir()) == [f"{i}.jpg" for i in train + val]
    assert sorted(p.name for p in (cvusa / "grd").iterdir()) == [f"{i}.png" for i in train + val]


def test_cvact_mat_loads_the_way_the_authors_read_it(written):
    cvact = written[0] / "CVACT"
    mat = load_mat(cvact)
    pano_ids, utm = mat["panoIds"], mat["utm"]
    total = NUM_TRAIN + NUM_VAL
    assert pano_ids.shape == (total,) and len(set(pano_ids)) == total
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", pano_id) for pano_id in pano_ids)
    assert utm.shape == (total, 2) and utm.dtype == np.float64
    train = mat["trainSet"]["trainInd"][0][0]
    val, val_all = mat["valSet"]["valInd"][0][0], mat["valSetAll"]["valInd"][0][0]
    assert train.shape == (NUM_TRAIN, 1) and val.shape == (NUM_VAL, 1)
    np.testing.assert_array_equal(val, val_all)
    assert sorted(np.concatenate([train, val]).ravel().astype(int)) == list(range(1, total + 1))  # 1-based
    for pano_id in pano_ids:
        assert (cvact / "sat" / f"{pano_id}_satView_polish.jpg").is_file()
        assert (cvact / "grd" / f"{pano_id}_grdView.jpg").is_file()
    assert len(list((cvact / "sat").iterdir())) == len(list((cvact / "grd").iterdir())) == total


def test_both_layouts_hold_the_same_pairs(written):
    out_dir = written[0]
    pano_ids = load_mat(out_dir / "CVACT")["panoIds"]
    for number, pano_id in ((1, pano_ids[0]), (NUM_TRAIN + NUM_VAL, pano_ids[-1])):
        cvusa_sat = (out_dir / "CVUSA" / "sat" / f"{number:07d}.jpg").read_bytes()
        assert cvusa_sat == (out_dir / "CVACT" / "sat" / f"{pano_id}_satView_polish.jpg").read_bytes()
        png = read_rgb(out_dir / "CVUSA" / "grd" / f"{number:07d}.png").astype(float)
        jpg = read_rgb(out_dir / "CVACT" / "grd" / f"{pano_id}_grdView.jpg").astype(float)
        assert np.abs(png - jpg).mean() < 6.0  # same panorama, lossless versus JPEG


def test_validation_region_is_disjoint_from_training_with_a_margin(written):
    mat = load_mat(written[0] / "CVACT")
    utm = mat["utm"]
    train = utm[mat["trainSet"]["trainInd"][0][0].ravel().astype(int) - 1]
    val = utm[mat["valSet"]["valInd"][0][0].ravel().astype(int) - 1]
    gaps = np.linalg.norm(train[:, None] - val[None], axis=-1)
    assert gaps.min() > max(SAT_FOOTPRINT_M * np.sqrt(2), 2 * REACH_M) - 1.0  # no shared crop, nothing seen twice
    for points in (train, val):
        spacing = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(len(points)) * 1e9
        assert spacing.min() >= MIN_SPACING_M - CELL_M


def test_images_have_the_configured_sizes(written):
    out_dir = written[0]
    for layout in ("CVUSA", "CVACT"):
        for folder, size in (("sat", SAT_SIZE), ("grd", GRD_SIZE)):
            for path in (out_dir / layout / folder).iterdir():
                assert read_rgb(path).shape == (*size, 3), path


def test_panoramas_have_sky_on_top_and_ground_below(written):
    panoramas = np.stack([read_rgb(p).astype(float) for p in sorted((written[0] / "CVUSA" / "grd").iterdir())])
    rows = panoramas.shape[1]
    top, bottom = panoramas[:, : rows // 8].mean(axis=(0, 1, 2)), panoramas[:, -rows // 4 :].mean(axis=(0, 1, 2))
    assert top.mean() > 110 and top[2] > top[0] + 30, top  # bright and blue
    assert (top[2] - top[0]) - (bottom[2] - bottom[0]) > 30, (top, bottom)  # the ground is not sky-blue


def test_same_seed_gives_identical_files_and_another_seed_different_ones(written, tmp_path):
    first = all_files(written[0])
    again = tiny_world(tmp_path / "again")
    assert again["num_train"] == NUM_TRAIN
    assert all_files(tmp_path / "again") == first
    tiny_world(tmp_path / "other", seed=4)
    other = all_files(tmp_path / "other")
    assert other.keys() != first.keys()  # CVACT's random panoIds differ
    assert other["CVUSA/sat/0000001.jpg"] != first["CVUSA/sat/0000001.jpg"]
    assert other["CVUSA/grd/0000001.png"] != first["CVUSA/grd/0000001.png"]


def test_plot_pairs_writes_a_picture_of_several_pairs(written, tmp_path):
    png = synthetic.plot_pairs(written[0], tmp_path / "pairs.png", n=3)
    image = read_rgb(png)
    assert image.shape[0] > 200 and image.shape[1] > 600
    assert image.std() > 30  # pictures, not a blank canvas
    assert synthetic.plot_pairs(written[0] / "CVUSA", tmp_path / "again.png", n=2, split="train").is_file()


def test_cli_writes_layouts_sizes_and_plot(tmp_path, capsys):
    out_dir, png = tmp_path / "cli", tmp_path / "cli.png"
    argv = ["--out", str(out_dir), "--num_train", "4", "--num_val", "2", "--seed", "5"]
    summary = synthetic.main([*argv, "--sat_size", "40", "56", "--grd_size", "24", "96", "--plot", str(png), "--quiet"])
    assert '"num_train": 4' in capsys.readouterr().out
    assert summary["plot"] == str(png) and png.is_file()
    assert read_rgb(out_dir / "CVUSA" / "sat" / "0000001.jpg").shape == (40, 56, 3)
    assert read_rgb(out_dir / "CVUSA" / "grd" / "0000006.png").shape == (24, 96, 3)
    assert len(split_ids(out_dir / "CVUSA", "val")) == 2


def test_bad_arguments_fail_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="num_train and num_val must be at least 1"):
        generate(tmp_path, 0, 3, progress=False)
    with pytest.raises(ValueError, match=r"grd_size must be \(height, width\)"):
        generate(tmp_path, 2, 2, grd_size=(4, 16), progress=False)
    with pytest.raises(FileNotFoundError, match="val-19zl.csv not found"):
        synthetic.plot_pairs(tmp_path / "missing", tmp_path / "x.png")


def tower_world(offset_m: tuple[float, float]) -> tuple[World, np.ndarray]:
    """Flat grass with one red 20 m tower `offset_m` (north, east) metres from the centre cell."""
    size = 2 * (cells(REACH_M) + 20)
    world = World(
        albedo=np.full((size, size, 3), (110, 140, 70), np.uint8),
        height=np.zeros((size, size), np.float32),
        kind=np.full((size, size), GROUND, np.uint8),
        aerial_shade=np.full((size, size), 255, np.uint8),
    )
    centre = np.array([size // 2, size // 2])
    row, col = centre[0] - cells(offset_m[0]), centre[1] + cells(offset_m[1])
    half = cells(3.0)
    world.albedo[row - half : row + half, col - half : col + half] = (210, 30, 30)
    world.height[row - half : row + half, col - half : col + half] = 20.0
    world.kind[row - half : row + half, col - half : col + half] = BUILDING
    return world, centre


# (north, east) offset of the tower and the panorama column, as a fraction of the width, that must show it
COMPASS = [((15.0, 0.0), 0.5), ((0.0, 15.0), 0.75), ((-15.0, 0.0), 0.0), ((0.0, -15.0), 0.25)]


@pytest.mark.parametrize(("offset_m", "column_fraction"), COMPASS)
def test_a_tower_stands_in_its_compass_direction_in_both_views(offset_m, column_fraction):
    world, centre = tower_world(offset_m)
    rng = np.random.default_rng(0)
    panorama = render_panorama(world, centre, (64, 256), rng).astype(float)

    def colour_at(fraction: float) -> np.ndarray:  # rows 2-20: 11-37 degrees up, the tower or the sky
        column = int(fraction * 256) % 256
        return panorama[2:20, max(column - 2, 0) : column + 3].mean(axis=(0, 1))

    facing, behind = colour_at(column_fraction), colour_at(column_fraction + 0.5)
    assert facing[0] - facing[2] > 50, facing  # red tower
    assert behind[2] - behind[0] > 40, behind  # blue sky
    aerial = render_aerial(world, centre, (64, 64), rng).astype(int)
    red_rows, red_cols = np.nonzero(aerial[..., 0] - aerial[..., 1] > 100)
    north, east = 31.5 - red_rows.mean(), red_cols.mean() - 31.5
    assert np.allclose((north, east), np.array(offset_m) * 64 / SAT_FOOTPRINT_M, atol=2.0)


# ----------------------------------------------------------------------------------------------- VIGOR


def vigor_labels(vigor: Path, city: str, split: str = "pano_label_balanced.txt") -> list[list[str]]:
    rows = [line.split() for line in (vigor / "splits" / city / split).read_text().splitlines()]
    assert all(len(row) == 13 for row in rows)
    return rows


def test_vigor_has_four_cities_in_the_official_layout(written):
    from dataset.vigor import CITIES, panorama_latlon, satellite_latlon

    vigor = written[0] / "VIGOR"
    assert sorted(p.name for p in vigor.iterdir()) == sorted([*CITIES, "splits"])
    per_city = written[1]["vigor"]["cities"]
    for city in CITIES:
        assert sorted(p.name for p in (vigor / "splits" / city).iterdir()) == sorted(
            ["satellite_list.txt", "same_area_balanced_train.txt", "same_area_balanced_test.txt",
             "pano_label_balanced.txt"])
        tiles = (vigor / "splits" / city / "satellite_list.txt").read_text().split()
        assert sorted(tiles) == sorted(p.name for p in (vigor / city / "satellite").iterdir())
        assert all(satellite_latlon(name) for name in tiles) and len(tiles) == per_city[city]["satellites"]
        rows = vigor_labels(vigor, city)
        assert sorted(row[0] for row in rows) == sorted(p.name for p in (vigor / city / "panorama").iterdir())
        assert all(panorama_latlon(row[0]) for row in rows) and len(rows) == per_city[city]["panoramas"]
        train, test = (vigor_labels(vigor, city, f"same_area_balanced_{s}.txt") for s in ("train", "test"))
        assert sorted(map(tuple, train + test)) == sorted(map(tuple, rows)) and train and test
        assert {row[1] for row in rows} < set(tiles)  # some tiles are nobody's positive
        for name in tiles[:2]:
            assert read_rgb(vigor / city / "satellite" / name).shape == (*SAT_SIZE, 3)
        assert read_rgb(vigor / city / "panorama" / rows[0][0]).shape == (*GRD_SIZE, 3)


def test_vigor_panoramas_lie_on_their_positive_and_three_semi_positives(written):
    from dataset.vigor import CITIES, panorama_latlon, satellite_latlon
    from utils.geo import haversine_m

    vigor = written[0] / "VIGOR"
    metres_per_pixel = SAT_FOOTPRINT_M / SAT_SIZE[0]
    off_centre = []
    for city in CITIES:
        for row in vigor_labels(vigor, city):
            pano = np.array(panorama_latlon(row[0]))
            tiles = np.array([satellite_latlon(name) for name in row[1::3]])
            assert len(set(row[1::3])) == 4
            delta_m = np.array(row[1:]).reshape(4, 3)[:, 1:].astype(float) * metres_per_pixel
            # the offsets in the labels agree with the positions in the names: y to the south, x to the west
            south = haversine_m(tiles, np.stack([np.full(4, pano[0]), tiles[:, 1]], 1)) * np.sign(tiles[:, 0] - pano[0])
            west = haversine_m(tiles, np.stack([tiles[:, 0], np.full(4, pano[1])], 1)) * np.sign(tiles[:, 1] - pano[1])
            np.testing.assert_allclose(delta_m, np.stack([south, west], 1), atol=0.3)
            assert np.abs(delta_m).max() <= SAT_FOOTPRINT_M / 2 + 0.3  # every tile covers the panorama
            assert np.abs(delta_m[0]).max() <= SAT_FOOTPRINT_M / 4 + 0.3  # in the positive's central quarter
            distances = haversine_m(np.repeat(pano[None], 4, 0), tiles)
            assert distances.argmin() == 0
            off_centre.append(distances[0])
    assert max(off_centre) > 5.0  # panoramas stand at random places, not at tile centres


def vigor_gps2distance(lat_a: float, lng_a: float, lat_b: float, lng_b: float) -> float:
    """VIGOR's great-circle distance in metres (evaluate_from_npy.py of its repository)."""
    lat_a, lat_b, lng_a, lng_b = (value * np.pi / 180.0 for value in (lat_a, lat_b, lng_a, lng_b))
    radius = 6371004.0
    cosine = np.sin(lat_a) * np.sin(lat_b) + np.cos(lat_a) * np.cos(lat_b) * np.cos(lng_a - lng_b)
    return float(radius * np.arccos(np.clip(cosine, -1.0, 1.0)))


def vigor_lat_lng(lat_a: float, distance_m: float) -> np.ndarray:
    """VIGOR's degrees of latitude and longitude that `distance_m` metres span at latitude `lat_a` (its Lat_Lng)."""
    lat = lat_a * np.pi / 180.0
    radius = 6371004.0
    delta_lat = np.arccos(np.cos(distance_m / radius))
    delta_lng = np.arccos((np.cos(distance_m / radius) - np.sin(lat) * np.sin(lat)) / np.cos(lat) / np.cos(lat))
    return np.array([delta_lat, delta_lng]) * 180.0 / np.pi


def test_vigors_own_formula_places_every_panorama_from_each_tile_and_its_deltas(written):
    # evaluate_from_npy.py: position = tile centre - Lat_Lng(centre, half a tile in metres) * delta / half a tile
    # in pixels, with VIGOR's 320 pixels of 0.114 m replaced by the synthetic tiles' own half width and scale.
    from dataset.vigor import CITIES, panorama_latlon, satellite_latlon

    vigor = written[0] / "VIGOR"
    half_pixels = SAT_SIZE[0] / 2
    half_metres = half_pixels * SAT_FOOTPRINT_M / SAT_SIZE[0]
    errors = []
    for city in CITIES:
        for row in vigor_labels(vigor, city):
            truth = panorama_latlon(row[0])
            for name, delta_y, delta_x in np.array(row[1:]).reshape(4, 3):
                centre = np.array(satellite_latlon(name))
                delta = np.array([float(delta_y), float(delta_x)])
                position = centre - vigor_lat_lng(centre[0], half_metres) * delta / half_pixels
                errors.append(vigor_gps2distance(*truth, *position))
    assert len(errors) > 40 and max(errors) < 0.5


def test_vigor_cities_are_apart_and_read_by_the_dataset_in_both_modes(written):
    from dataset.vigor import CITIES, VIGOR
    from utils.geo import haversine_m

    vigor = written[0] / "VIGOR"
    gallery = VIGOR(vigor, "test", "same", SAT_SIZE, GRD_SIZE).gallery
    centres = {city: gallery.latlon[[i for i, c in enumerate(gallery.city_of) if c == city]] for city in CITIES}
    for first, second in [(a, b) for a in CITIES for b in CITIES if a < b]:
        pairs = np.array([(p, q) for p in centres[first] for q in centres[second]])
        assert haversine_m(pairs[:, 0], pairs[:, 1]).min() > 2 * REACH_M - 1  # nothing of one city seen from another
    cross = VIGOR(vigor, "train", "cross", SAT_SIZE, GRD_SIZE)
    assert cross.cities == ("NewYork", "Seattle") and len(cross) == 2 * written[1]["vigor"]["cities"]["Seattle"][
        "panoramas"]


def test_vigor_cvact_and_the_orthophoto_can_be_left_out(tmp_path):
    summary = generate(tmp_path, 3, 2, seed=1, sat_size=SAT_SIZE, grd_size=GRD_SIZE, progress=False, vigor_per_city=0)
    assert "vigor" not in summary and not (tmp_path / "VIGOR").exists() and "orthophoto" in summary
    alone = generate(tmp_path / "alone", 3, 2, seed=1, sat_size=SAT_SIZE, grd_size=GRD_SIZE, progress=False,
                     vigor_per_city=0, cvact=False, orthophoto=False)
    assert "cvact_root" not in alone and "orthophoto" not in alone
    assert [entry.name for entry in (tmp_path / "alone").iterdir()] == ["CVUSA"]
    assert all_files(tmp_path / "alone" / "CVUSA") == all_files(tmp_path / "CVUSA")


@pytest.mark.slow
def test_real_sizes_writes_each_benchmarks_own_files_which_the_datasets_resize(tmp_path, capsys, monkeypatch):
    from dataset.cvact import CVACT
    from dataset.cvusa import CVUSA
    generate_module = importlib.import_module("dataset.synthetic.generate")  # the package exports its function
    vigor_sizes = []

    def recorded(root, per_city, seed, sat_size, grd_size, progress):
        """VIGOR's writer takes its sizes from the caller (its files at any size: tests above); at real sizes
        its four cities would take 25 s to render, so only what it is asked for is checked here."""
        vigor_sizes.append((sat_size, grd_size))
        return {"vigor_root": str(root)}

    monkeypatch.setattr(generate_module, "generate_vigor", recorded)
    summary = synthetic.main(["--out", str(tmp_path), "--num_train", "1", "--num_val", "1", "--vigor_per_city", "2",
                              "--real_sizes", "--quiet", "--plot", str(tmp_path / "pairs.png")])
    assert vigor_sizes == [((640, 640), (1024, 2048))]
    assert '"file_sizes"' in capsys.readouterr().out and read_rgb(tmp_path / "pairs.png").std() > 30
    assert summary["sat_metres_per_pixel"] == SAT_FOOTPRINT_M / 750
    cvusa, cvact = tmp_path / "CVUSA", tmp_path / "CVACT"
    assert not (cvusa / "sat").exists() and not (cvusa / "grd").exists()  # the download's own layout
    (pano_id,) = split_ids(cvusa, "val")
    (sat_jpg,), (grd_jpg,) = CVUSA(cvusa, "val").sat_paths, CVUSA(cvusa, "val").grd_paths
    assert sat_jpg == str(cvusa / "bingmap" / "19" / f"{pano_id}.jpg")
    assert grd_jpg == str(cvusa / "streetview" / "panos" / f"{pano_id}.jpg")
    expected = {
        sat_jpg: (750, 750, 3), grd_jpg: (224, 1232, 3),
        next((cvact / "sat").iterdir()): (1200, 1200, 3), next((cvact / "grd").iterdir()): (832, 1664, 3),
    }
    for path, shape in expected.items():
        assert read_rgb(Path(path)).shape == shape, path
        assert Path(path).read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    for dataset in (CVUSA(cvusa, "train", SAT_SIZE, GRD_SIZE), CVACT(cvact, "val", SAT_SIZE, GRD_SIZE)):
        sample = dataset[0]
        assert sample["sat"].shape == (3, *SAT_SIZE) and sample["grd"].shape == (3, *GRD_SIZE)


def test_vigor_labels_count_the_pixels_of_the_tile_files(tmp_path):
    """At any file size, as at VIGOR's 640 px: a positive lies in its tile's central half, a semi-positive
    farther out, though within the tile."""
    from dataset.vigor import VIGOR

    generate_vigor(tmp_path, 2, seed=2, sat_size=(96, 96), grd_size=(16, 64), progress=False)
    deltas = np.abs(VIGOR(tmp_path, "train", "same", SAT_SIZE, GRD_SIZE).delta)
    assert deltas[:, 0].max() <= 96 / 4 < deltas.max() <= 96 / 2


def test_the_orthophoto_is_the_map_in_utm_and_the_csv_holds_each_panoramas_position(written):
    import rasterio
    from pyproj import Transformer

    out_dir, summary = written
    with rasterio.open(out_dir / "orthophoto" / "map.tif") as raster:
        assert raster.crs.to_epsg() == 32610 and raster.count == 3 and raster.dtypes[0] == "uint8"
        transform = raster.transform
        pixels = np.moveaxis(raster.read(), 0, -1)
    assert (transform.c, transform.f) == (500_000.0, 4_200_000.0)  # the world's north-west corner
    assert transform.a == pytest.approx(SAT_FOOTPRINT_M / SAT_SIZE[1], rel=0.01) and transform.b == 0
    assert summary["orthophoto"]["size"] == list(pixels.shape[:2])

    lines = (out_dir / "orthophoto" / "panoramas.csv").read_text().splitlines()
    assert lines[0] == "name,latitude,longitude,split" and len(lines) == 1 + NUM_TRAIN + NUM_VAL
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    tile_px = round(SAT_FOOTPRINT_M / transform.a)
    correlations = []
    for line in lines[1:]:
        name, latitude, longitude, split = line.split(",")
        assert split == ("train" if int(name[:7]) <= NUM_TRAIN else "val")
        easting, northing = to_utm.transform(float(longitude), float(latitude))
        col, row = (easting - transform.c) / transform.a, (northing - transform.f) / transform.e
        top, left = int(round(row)) - tile_px // 2, int(round(col)) - tile_px // 2
        tile = cv2.resize(pixels[top: top + tile_px, left: left + tile_px], SAT_SIZE[::-1],
                          interpolation=cv2.INTER_AREA)
        aerial = read_rgb(out_dir / "CVUSA" / "sat" / f"{name[:7]}.jpg")
        correlations.append(np.corrcoef(tile.ravel().astype(float), aerial.ravel().astype(float))[0, 1])
    # the crop of the orthophoto at each panorama's position is its aerial image, under another light
    assert min(correlations) > 0.8, correlations
