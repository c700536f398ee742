"""An orthophoto (a GeoTIFF in any projection) cut into north-up square tiles of a ground size in metres.

A raster in a projected CRS in metres with a north-up geotransform is cut as it is. Any other (latitude and
longitude in degrees, feet, a rotated geotransform) is first warped on the fly (a GDAL warped VRT, nothing
written) into the UTM zone of its centre at about its own ground resolution, so that a tile is a square of
metres on the ground everywhere. "North-up" is the grid's north: in UTM it differs from true north by the
meridian convergence, under 3 degrees within a zone, which `TileGrid.convergence_deg` reports.

Tiles lie on a regular grid of centres `stride_m` apart, each a `tile_m` square wholly inside the raster; one
with more than `max_nodata` of its pixels outside the data (the nodata value, a mask or an alpha band) is
left out. Each tile's centre and corners are given in latitude and longitude (WGS 84).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

# Ground footprints of the benchmarks' aerial images, from their zoom level and size at their latitude
# (Web Mercator: 156543.03 * cos(latitude) / 2**zoom metres a pixel): CVUSA 750 px at zoom 19 across the
# United States (~38 N: 0.235 m); CVACT 1200 px at zoom 20 in Canberra (35.3 S: 0.122 m); VIGOR 640 px at
# zoom 20 in its four US cities (~40 N: 0.114 m); the synthetic world's 80 m crops.
FOOTPRINTS_M = {"cvusa": 176.0, "cvact": 146.0, "vigor": 73.0, "synthetic": 80.0}
DEFAULT_FOOTPRINT = "cvusa"


class OrthophotoError(ValueError):
    """A GeoTIFF that cannot be cut as asked; the message names the file and what was expected."""


def _rasterio():
    try:
        import rasterio
    except ImportError:
        raise OrthophotoError("cutting an orthophoto needs rasterio: pip install rasterio pyproj") from None
    return rasterio


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of an orthophoto lie, in the pixels of the raster they are cut from.

    `crs` and `transform` are those of that raster: the file's own, or the UTM warp when `warped`.
    `origins` (N, 2) holds each kept tile's top-left pixel (row, col); a tile is `tile_px` pixels square.
    """

    path: str
    crs: str
    transform: tuple[float, ...]
    warped: bool
    width: int
    height: int
    tile_m: float
    stride_m: float
    metres_per_pixel: float
    tile_px: int
    origins: np.ndarray
    skipped_nodata: int
    convergence_deg: float

    def __len__(self) -> int:
        return len(self.origins)

    def centres_xy(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Tile centres (N, 2) as (x, y) in the grid's CRS."""
        origins = self.origins if rows is None else self.origins[rows]
        half = self.tile_px / 2
        return pixels_to_xy(self.transform, origins[:, 0] + half, origins[:, 1] + half)

    def centres_latlon(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Tile centres (N, 2) as (latitude, longitude) in degrees."""
        return to_latlon(self.crs, self.centres_xy(rows))

    def corners_latlon(self, rows: np.ndarray) -> np.ndarray:
        """Each tile's four corners (N, 4, 2) as (latitude, longitude), clockwise from the north-west."""
        origins = self.origins[rows].astype(np.float64)
        steps = np.array([(0, 0), (0, 1), (1, 1), (1, 0)], np.float64) * self.tile_px
        corners = origins[:, None, :] + steps[None]
        xy = pixels_to_xy(self.transform, corners[..., 0].ravel(), corners[..., 1].ravel())
        return to_latlon(self.crs, xy).reshape(-1, 4, 2)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The grid as arrays for an `.npz` (`from_arrays` reads them back), so a stored index need not cut again."""
        header = {name: getattr(self, name) for name in ("path", "crs", "warped", "width", "height", "tile_m",
                                                         "stride_m", "metres_per_pixel", "tile_px", "skipped_nodata",
                                                         "convergence_deg")}
        return {"grid_header": np.asarray(json.dumps({**header, "transform": list(self.transform)})),
                "grid_origins": self.origins}

    @classmethod
    def from_arrays(cls, arrays) -> TileGrid:
        header = json.loads(str(arrays["grid_header"]))
        header["transform"] = tuple(header["transform"])
        return cls(origins=np.asarray(arrays["grid_origins"]), **header)


def pixels_to_xy(transform: tuple[float, ...], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixel coordinates (row, col; 0, 0 the top-left corner of the top-left pixel) -> (N, 2) (x, y) by the
    GDAL geotransform (a, b, c, d, e, f): x = a * col + b * row + c, y = d * col + e * row + f."""
    a, b, c, d, e, f = transform[:6]
    rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    return np.stack([a * cols + b * rows + c, d * cols + e * rows + f], axis=-1)


def to_latlon(crs: str, xy: np.ndarray) -> np.ndarray:
    """(N, 2) (x, y) in `crs` -> (N, 2) (latitude, longitude) in WGS 84 degrees."""
    from pyproj import Transformer

    transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
    return np.stack([lat, lon], axis=-1)


def footprint_m(value: str) -> float:
    """A tile size given as metres or as a dataset's name (`FOOTPRINTS_M`)."""
    if value.lower() in FOOTPRINTS_M:
        return FOOTPRINTS_M[value.lower()]
    try:
        metres = float(value)
    except ValueError:
        metres = -1.0
    if not metres > 0:
        raise OrthophotoError(f"--tile_m {value}: expected metres above 0 or one of {', '.join(FOOTPRINTS_M)}")
    return metres


@contextlib.contextmanager
def open_metric(path: str) -> Iterator:
    """The raster at `path` as one to cut in metres: itself, or a UTM warp of it. Raises `OrthophotoError`."""
    rasterio = _rasterio()
    from rasterio.vrt import WarpedVRT

    try:
        source = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise OrthophotoError(f"--orthophoto {path}: cannot be read as a raster ({exc})") from None
    with source:
        if source.crs is None:
            raise OrthophotoError(f"--orthophoto {path}: has no projection (CRS); expected a GeoTIFF with one, "
                                  "e.g. set with gdal_edit.py -a_srs EPSG:XXXX")
        if source.count < 3 or source.dtypes[0] != "uint8":
            raise OrthophotoError(f"--orthophoto {path}: {source.count} band(s) of {source.dtypes[0]}; expected 8-bit "
                                  "RGB (3 bands, or 4 with alpha), e.g. from gdal_translate -ot Byte -scale")
        if _is_metric_north_up(source):
            yield source
            return
        utm = _utm_of_centre(source)
        with WarpedVRT(source, crs=utm, resampling=rasterio.enums.Resampling.bilinear) as warped:
            yield warped


def _is_metric_north_up(source) -> bool:
    transform = source.transform
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        return False
    if not source.crs.is_projected:
        return False
    units = (source.crs.linear_units or "").lower()
    return units in ("metre", "meter", "m", "metres", "meters")


def _utm_of_centre(source) -> str:
    from pyproj import CRS
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    bounds = source.bounds
    centre = to_latlon(source.crs.to_wkt(), np.array([[(bounds.left + bounds.right) / 2,
                                                       (bounds.bottom + bounds.top) / 2]]))[0]
    found = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(
        west_lon_degree=centre[1], south_lat_degree=centre[0], east_lon_degree=centre[1],
        north_lat_degree=centre[0]))
    return CRS.from_epsg(found[0].code).to_wkt()


def plan_tiles(path: str, tile_m: float, stride_m: float, max_nodata: float = 0.05) -> TileGrid:
    """The tiles of the orthophoto at `path`: every `tile_m` square on a grid `stride_m` apart that lies wholly
    in the raster and is at most `max_nodata` outside its data."""
    if not stride_m > 0:
        raise OrthophotoError(f"--stride_m {stride_m}: expected metres above 0")
    with open_metric(path) as raster:
        transform = tuple(raster.transform)[:6]
        metres_per_pixel = (abs(transform[0]) + abs(transform[4])) / 2
        tile_px = max(1, int(round(tile_m / metres_per_pixel)))
        stride_px = max(1, stride_m / metres_per_pixel)
        if tile_px > raster.width or tile_px > raster.height:
            raise OrthophotoError(
                f"--tile_m {tile_m:g}: a tile of {tile_px} pixels ({metres_per_pixel:.3g} m each) is larger than "
                f"{path} ({raster.width} x {raster.height} pixels, {raster.width * metres_per_pixel:.0f} x "
                f"{raster.height * metres_per_pixel:.0f} m); expected a smaller --tile_m or a larger orthophoto")
        tops = _starts(raster.height, tile_px, stride_px)
        lefts = _starts(raster.width, tile_px, stride_px)
        keep = _enough_data(raster, tops, lefts, tile_px, max_nodata)
        rows, cols = np.nonzero(keep)
        origins = np.stack([tops[rows], lefts[cols]], axis=1).astype(np.int64)
        crs = raster.crs.to_wkt()
        grid = TileGrid(str(path), crs, transform, _is_warp(raster), raster.width,
                        raster.height, float(tile_m), float(stride_m), metres_per_pixel, tile_px, origins,
                        int(keep.size - keep.sum()), _convergence_deg(crs, transform, raster.width, raster.height))
    if not len(grid):
        raise OrthophotoError(f"--orthophoto {path}: every tile is more than {max_nodata:.0%} nodata; expected "
                              "imagery inside the raster's data mask")
    return grid


def _is_warp(raster) -> bool:
    from rasterio.vrt import WarpedVRT

    return isinstance(raster, WarpedVRT)


def _starts(length: int, tile_px: int, stride_px: float) -> np.ndarray:
    """Top-left offsets of the tiles along one axis: `stride_px` apart (to the nearest pixel), the last one ending
    inside."""
    offsets = np.round(np.arange(int(math.floor((length - tile_px) / stride_px + 1e-9)) + 1) * stride_px)
    return offsets[offsets <= length - tile_px].astype(np.int64)


def _enough_data(raster, tops: np.ndarray, lefts: np.ndarray, tile_px: int, max_nodata: float) -> np.ndarray:
    """(rows, cols) bool: whether each tile is at most `max_nodata` outside the data, from the data mask read at
    about 16 x 16 cells a tile, a strip at a time."""
    rasterio = _rasterio()
    from rasterio.windows import Window

    scale = max(1.0, tile_px / 16)
    keep = np.zeros((len(tops), len(lefts)), bool)
    for row, top in enumerate(tops):
        window = Window(0, int(top), raster.width, tile_px)
        shape = (max(1, round(tile_px / scale)), max(1, round(raster.width / scale)))
        mask = raster.dataset_mask(window=window, out_shape=shape,
                                   resampling=rasterio.enums.Resampling.nearest) > 0
        data_per_column = np.concatenate([[0], np.cumsum(mask.sum(axis=0))])
        starts = np.clip(np.round(lefts / scale).astype(np.int64), 0, shape[1])
        ends = np.clip(np.round((lefts + tile_px) / scale).astype(np.int64), starts + 1, shape[1])
        share_valid = (data_per_column[ends] - data_per_column[starts]) / ((ends - starts) * shape[0])
        keep[row] = share_valid >= 1.0 - max_nodata
    return keep


def _convergence_deg(crs: str, transform: tuple[float, ...], width: int, height: int) -> float:
    """The angle between grid north and true north at the raster's centre, in degrees."""
    from pyproj import CRS, Proj

    centre = to_latlon(crs, pixels_to_xy(transform, np.array([height / 2]), np.array([width / 2])))[0]
    try:
        factors = Proj(CRS.from_wkt(crs)).get_factors(centre[1], centre[0])
    except Exception:  # a CRS pyproj cannot give factors for: no figure rather than a wrong one
        return float("nan")
    return float(factors.meridian_convergence)


def read_tiles(grid: TileGrid, rows: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """The tiles `rows` of `grid` as uint8 RGB (len(rows), H, W, 3), each resampled to `size_hw`."""
    with open_metric(grid.path) as raster:
        return read_tiles_from(raster, grid, rows, size_hw)


def read_tiles_from(raster, grid: TileGrid, rows: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """`read_tiles` with the raster already open (`open_metric`): tiles that share a row of the grid are read
    as one strip."""
    from rasterio.windows import Window

    rows = np.asarray(rows, np.int64)
    out = np.empty((len(rows), size_hw[0], size_hw[1], 3), np.uint8)
    origins = grid.origins[rows]
    for top in np.unique(origins[:, 0]):
        in_strip = np.flatnonzero(origins[:, 0] == top)
        left, right = int(origins[in_strip, 1].min()), int(origins[in_strip, 1].max()) + grid.tile_px
        strip = raster.read((1, 2, 3), window=Window(left, int(top), right - left, grid.tile_px))
        strip = np.moveaxis(strip, 0, -1)
        for k in in_strip:
            offset = int(origins[k, 1]) - left
            tile = np.ascontiguousarray(strip[:, offset: offset + grid.tile_px])
            interpolation = cv2.INTER_AREA if grid.tile_px > size_hw[0] else cv2.INTER_LINEAR
            out[k] = cv2.resize(tile, (size_hw[1], size_hw[0]), interpolation=interpolation)
    return out


def overview(path: str, max_side: int = 2048) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The whole orthophoto as one RGB picture of at most `max_side` pixels a side (from its overviews where it
    has them), with its (south, west, north, east) bounds in degrees."""
    rasterio = _rasterio()
    with open_metric(path) as raster:
        scale = max(raster.width, raster.height) / max_side
        shape = (3, max(1, round(raster.height / max(scale, 1))), max(1, round(raster.width / max(scale, 1))))
        image = np.moveaxis(raster.read((1, 2, 3), out_shape=shape, resampling=rasterio.enums.Resampling.average),
                            0, -1)
        corners = pixels_to_xy(tuple(raster.transform)[:6], np.array([0, 0, raster.height, raster.height]),
                               np.array([0, raster.width, raster.width, 0]))
        latlon = to_latlon(raster.crs.to_wkt(), corners)
    return np.ascontiguousarray(image), (latlon[:, 0].min(), latlon[:, 1].min(), latlon[:, 0].max(),
                                         latlon[:, 1].max())
