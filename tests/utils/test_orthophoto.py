import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import Affine

from utils.geo import haversine_m
from utils.orthophoto import FOOTPRINTS_M, OrthophotoError, footprint_m, overview, plan_tiles, read_tiles

ORIGIN_X, ORIGIN_Y, PIXEL_M = 400_000.0, 5_000_000.0, 0.5  # UTM 33N, near 45.1 N, 13.7 E


def write_geotiff(path, pixels, crs="EPSG:32633", transform=None, nodata=None):
    """pixels (3, H, W) uint8 written as a GeoTIFF with `transform` (default: north-up, 0.5 m pixels)."""
    transform = transform or Affine(PIXEL_M, 0, ORIGIN_X, 0, -PIXEL_M, ORIGIN_Y)
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype="uint8", crs=crs, transform=transform, nodata=nodata) as out:
        out.write(pixels)
    return path


def coded_pixels(height, width):
    """Each pixel says where it is: red = row % 251, green = column % 251, blue = (row + column) % 7."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows % 251, cols % 251, (rows + cols) % 7]).astype(np.uint8)


def test_tiles_lie_on_a_grid_of_metres_inside_the_image(tmp_path):
    path = write_geotiff(tmp_path / "city.tif", coded_pixels(300, 400))
    grid = plan_tiles(str(path), tile_m=50, stride_m=25)
    assert grid.tile_px == 100 and not grid.warped and grid.metres_per_pixel == PIXEL_M
    tops, lefts = [0, 50, 100, 150, 200], [0, 50, 100, 150, 200, 250, 300]  # every 50 px, the last ending inside
    assert grid.origins.tolist() == [[top, left] for top in tops for left in lefts]

    # each centre by the geotransform written out, then into latitude and longitude by PROJ
    x = ORIGIN_X + PIXEL_M * (grid.origins[:, 1] + 50)
    y = ORIGIN_Y - PIXEL_M * (grid.origins[:, 0] + 50)
    np.testing.assert_allclose(grid.centres_xy(), np.stack([x, y], 1))
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(x, y)
    np.testing.assert_allclose(grid.centres_latlon(), np.stack([lat, lon], 1), atol=1e-9)
    assert 45.0 < lat[0] < 45.2 and 13.6 < lon[0] < 13.8
    # neighbours 25 m apart on the ground, a tile's corners 50 m apart (UTM scale and a spherical Earth: 0.3 %)
    assert haversine_m(grid.centres_latlon()[:1], grid.centres_latlon()[1:2])[0] == pytest.approx(25, rel=5e-3)
    corners = grid.corners_latlon(np.array([0]))[0]
    assert haversine_m(corners[:1], corners[1:2])[0] == pytest.approx(50, rel=5e-3)
    assert abs(grid.convergence_deg) < 3

    tiles = read_tiles(grid, np.array([0, 9, 34]), (100, 100))  # at the tile's own size: the pixels themselves
    pixels = coded_pixels(300, 400)
    for tile, (top, left) in zip(tiles, grid.origins[[0, 9, 34]], strict=True):
        np.testing.assert_array_equal(tile, np.moveaxis(pixels[:, top:top + 100, left:left + 100], 0, -1))
    assert read_tiles(grid, np.array([3]), (32, 32)).shape == (1, 32, 32, 3)


def test_tiles_mostly_outside_the_data_are_left_out(tmp_path):
    pixels = coded_pixels(300, 400)
    pixels[:, :, 300:] = 0  # the eastern quarter has no data
    pixels[pixels == 0] = 1  # so that nodata means only that quarter
    pixels[:, :, 300:] = 0
    path = write_geotiff(tmp_path / "edge.tif", pixels, nodata=0)
    grid = plan_tiles(str(path), tile_m=50, stride_m=25, max_nodata=0.05)
    lefts = sorted(set(grid.origins[:, 1].tolist()))
    assert lefts == [0, 50, 100, 150, 200]  # 250 and 300 reach into the empty quarter (50 % and 100 %)
    assert grid.skipped_nodata == 2 * 5
    lenient = plan_tiles(str(path), tile_m=50, stride_m=25, max_nodata=0.6)
    assert sorted(set(lenient.origins[:, 1].tolist())) == [0, 50, 100, 150, 200, 250]


def test_a_raster_in_degrees_is_cut_in_metres(tmp_path):
    degrees = Affine(1e-5, 0, 13.7, 0, -1e-5, 45.1)  # about 0.79 m east-west and 1.11 m north-south a pixel
    path = write_geotiff(tmp_path / "wgs84.tif", coded_pixels(300, 400), crs="EPSG:4326", transform=degrees)
    grid = plan_tiles(str(path), tile_m=60, stride_m=30)
    assert grid.warped and "UTM zone 33N" in grid.crs
    pixel = grid.metres_per_pixel  # about 0.92 m: tiles and steps are whole pixels of the warp
    centres = grid.centres_latlon()
    assert haversine_m(centres[:1], centres[1:2])[0] == pytest.approx(30, abs=pixel)
    corners = grid.corners_latlon(np.array([0]))[0]
    assert haversine_m(corners[:1], corners[1:2])[0] == pytest.approx(60, abs=pixel)
    assert haversine_m(corners[1:2], corners[2:3])[0] == pytest.approx(60, abs=pixel)
    assert (centres[:, 0] < 45.1).all() and (centres[:, 1] > 13.7).all()
    assert read_tiles(grid, np.array([0]), (16, 16)).shape == (1, 16, 16, 3)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the file without a projection
def test_mistakes_name_the_file_and_what_was_expected(tmp_path):
    with rasterio.open(tmp_path / "bare.tif", "w", driver="GTiff", width=50, height=50, count=3,
                       dtype="uint8") as out:
        out.write(np.zeros((3, 50, 50), np.uint8))
    with pytest.raises(OrthophotoError, match=r"bare.tif: has no projection \(CRS\)"):
        plan_tiles(str(tmp_path / "bare.tif"), 10, 5)
    path = write_geotiff(tmp_path / "small.tif", coded_pixels(100, 120))
    with pytest.raises(OrthophotoError, match=r"--tile_m 70: a tile of 140 pixels \(0.5 m each\) is larger than "
                                              r".*small.tif \(120 x 100 pixels, 60 x 50 m\)"):
        plan_tiles(str(path), 70, 35)
    with pytest.raises(OrthophotoError, match="--stride_m 0"):
        plan_tiles(str(path), 20, 0)
    (tmp_path / "text.tif").write_text("not a raster")
    with pytest.raises(OrthophotoError, match="text.tif: cannot be read as a raster"):
        plan_tiles(str(tmp_path / "text.tif"), 20, 10)
    with rasterio.open(tmp_path / "grey.tif", "w", driver="GTiff", width=50, height=50, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(1, 0, ORIGIN_X, 0, -1, ORIGIN_Y)) as out:
        out.write(np.zeros((1, 50, 50), np.uint16))
    with pytest.raises(OrthophotoError, match="1 band.* of uint16; expected 8-bit RGB"):
        plan_tiles(str(tmp_path / "grey.tif"), 20, 10)


def test_tile_sizes_by_name_or_metres():
    assert footprint_m("CVUSA") == FOOTPRINTS_M["cvusa"] and footprint_m("vigor") == 73.0
    assert footprint_m("52.5") == 52.5
    for bad in ("0", "-3", "wide"):
        with pytest.raises(OrthophotoError, match=f"--tile_m {bad}: expected metres above 0"):
            footprint_m(bad)


def test_the_overview_is_small_and_bounded_in_degrees(tmp_path):
    path = write_geotiff(tmp_path / "city.tif", coded_pixels(300, 400))
    image, (south, west, north, east) = overview(str(path), max_side=100)
    assert image.shape == (75, 100, 3) and image.dtype == np.uint8
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(  # the four corners
        [ORIGIN_X, ORIGIN_X + 200, ORIGIN_X + 200, ORIGIN_X], [ORIGIN_Y, ORIGIN_Y, ORIGIN_Y - 150, ORIGIN_Y - 150])
    assert (south, west, north, east) == pytest.approx((min(lat), min(lon), max(lat), max(lon)), abs=1e-9)
