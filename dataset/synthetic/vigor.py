"""The VIGOR layout: four cities of aerial tiles on a half-overlapping grid, panoramas at random places among them.

As in VIGOR (Zhu et al., CVPR 2021), tiles lie on a grid whose step is half a tile, so every place is covered
by four tiles: the one whose central quarter holds it (the positive) and three others (the semi-positives).
Panoramas stand at random open places, not at tile centres, and each city has tiles that are nobody's
positive. The cities are regions of one map, west to east, `REGION_GAP_M` apart, so none shows another.

Positions are written as latitude and longitude, from the map's geodetic origin (`ORIGIN_LAT_DEG`,
`ORIGIN_LON_DEG`) at its north-west corner, on a sphere of `EARTH_RADIUS_M`. A label's delta_y and delta_x
are the panorama's offset from the tile's centre in the tile's pixels with VIGOR's sign convention: y to the
south (down the image), x to the west, so that VIGOR's `centre - Lat_Lng(centre) * delta / half width` places it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dataset.synthetic.cvact import cvact_pano_ids
from dataset.synthetic.landscape import paint_world
from dataset.synthetic.render import encode, render_aerial, render_panorama
from dataset.synthetic.world import (
    CELL_M,
    LOCATION_AREA_M2,
    SAT_FOOTPRINT_M,
    World,
    cells,
    regions_in_a_row,
    sample_locations,
)

CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")  # west to east
TILE_STRIDE_M = SAT_FOOTPRINT_M / 2
ORIGIN_LAT_DEG, ORIGIN_LON_DEG = 41.0, -95.0
EARTH_RADIUS_M = 6_371_008.8
SPLIT_FILES = ("satellite_list.txt", "same_area_balanced_train.txt", "same_area_balanced_test.txt",
               "pano_label_balanced.txt")
VIGOR_STREAM = 7  # the VIGOR map's random stream, apart from that of the CVUSA and CVACT map


def latlon(positions: np.ndarray) -> np.ndarray:
    """(N, 2) map positions (row, col) in cells, fractions allowed -> (N, 2) (latitude, longitude) in degrees."""
    positions = np.asarray(positions, np.float64)
    north_m, east_m = -positions[:, 0] * CELL_M, positions[:, 1] * CELL_M
    latitude = ORIGIN_LAT_DEG + np.degrees(north_m / EARTH_RADIUS_M)
    longitude = ORIGIN_LON_DEG + np.degrees(east_m / (EARTH_RADIUS_M * np.cos(np.radians(ORIGIN_LAT_DEG))))
    return np.stack([latitude, longitude], axis=1)


@dataclass
class City:
    """One city: its tiles' centres and its panoramas' positions (row, col in cells), and the labels between them.

    `labels[p]` holds four tile indices, the positive first; `offsets_m[p, k]` is panorama p's (south, east)
    offset in metres from the centre of tile `labels[p, k]`.
    """

    name: str
    tiles: np.ndarray  # (T, 2) float
    panoramas: np.ndarray  # (P, 2) float
    labels: np.ndarray  # (P, 4) int
    offsets_m: np.ndarray  # (P, 4, 2) float

    @property
    def tile_names(self) -> list[str]:
        return [f"satellite_{lat:.7f}_{lon:.7f}.png" for lat, lon in latlon(self.tiles)]


def lay_out_city(world: World, name: str, box: tuple[int, int, int, int], count: int,
                 rng: np.random.Generator) -> City:
    """A grid of tiles over `box` (its corners are tile centres) and `count` panoramas inside it, labelled."""
    stride = cells(TILE_STRIDE_M)
    steps = (box[2] - box[0]) // stride, (box[3] - box[1]) // stride
    rows, cols = np.meshgrid(np.arange(steps[0] + 1), np.arange(steps[1] + 1), indexing="ij")
    tiles = np.stack([box[0] + rows.ravel() * stride, box[1] + cols.ravel() * stride], axis=1).astype(np.float64)
    cells_taken = sample_locations(world, (box[0], box[1], box[0] + steps[0] * stride, box[1] + steps[1] * stride),
                                   count, rng)
    panoramas = cells_taken + 0.5  # a camera stands at its cell's centre; a tile's centre is a cell corner
    grid = (panoramas - np.array(box[:2])) / stride
    low = np.floor(grid).astype(np.int64)
    nearest = np.rint(grid).astype(np.int64)
    labels = np.empty((count, 4), np.int64)
    for p in range(count):
        around = [(low[p, 0] + dr, low[p, 1] + dc) for dr in (0, 1) for dc in (0, 1)]
        around.sort(key=lambda tile: tile != tuple(nearest[p]))  # the positive first, the rest in grid order
        labels[p] = [row * (steps[1] + 1) + col for row, col in around]
    offsets_m = (panoramas[:, None, :] - tiles[labels]) * CELL_M
    return City(name, tiles, panoramas, labels, offsets_m)


def write_city(root: Path, city: City, world: World, pano_ids: list[str], seed: int, city_index: int,
               sat_size: tuple[int, int], grd_size: tuple[int, int], progress: bool) -> None:
    """The city's images (satellite .png, panorama .jpg) and its four split files."""
    for folder in (root / city.name / "satellite", root / city.name / "panorama", root / "splits" / city.name):
        folder.mkdir(parents=True, exist_ok=True)
    tile_names = city.tile_names
    pano_names = [f"{pano_id},{lat:.6f},{lon:.6f},.jpg" for pano_id, (lat, lon) in zip(pano_ids, latlon(city.panoramas),
                                                                                       strict=True)]
    work = [("satellite", t) for t in range(len(tile_names))] + [("panorama", p) for p in range(len(pano_names))]
    for kind, index in tqdm(work, desc=f"synthetic VIGOR {city.name}", unit="image", disable=not progress):
        view_rng = np.random.default_rng([seed, VIGOR_STREAM, city_index, kind == "panorama", index])
        if kind == "satellite":
            image = render_aerial(world, np.rint(city.tiles[index]).astype(np.int64), sat_size, view_rng)
            (root / city.name / kind / tile_names[index]).write_bytes(encode(image, ".png"))
        else:
            image = render_panorama(world, np.floor(city.panoramas[index]).astype(np.int64), grd_size, view_rng)
            (root / city.name / kind / pano_names[index]).write_bytes(encode(image, ".jpg"))

    pixels_per_m = np.array(sat_size, np.float64) / SAT_FOOTPRINT_M
    lines = []
    for p, name in enumerate(pano_names):
        fields = [name]
        for k in range(4):
            south, east = city.offsets_m[p, k] * pixels_per_m
            delta_y, delta_x = south, -east  # VIGOR's x counts to the west
            fields += [tile_names[city.labels[p, k]], f"{delta_y:.4f}", f"{delta_x:.4f}"]
        lines.append(" ".join(fields) + "\n")
    same_area_test = np.random.default_rng([seed, VIGOR_STREAM, city_index]).permutation(len(lines))[: len(lines) // 2]
    is_test = np.zeros(len(lines), bool)
    is_test[same_area_test] = True
    splits = root / "splits" / city.name
    (splits / "satellite_list.txt").write_text("".join(f"{name}\n" for name in tile_names))
    (splits / "pano_label_balanced.txt").write_text("".join(lines))
    (splits / "same_area_balanced_train.txt").write_text("".join(np.array(lines)[~is_test]))
    (splits / "same_area_balanced_test.txt").write_text("".join(np.array(lines)[is_test]))


def generate_vigor(root: str | Path, panoramas_per_city: int, seed: int = 0, sat_size: tuple[int, int] = (256, 256),
                   grd_size: tuple[int, int] = (128, 512), progress: bool = True) -> dict[str, Any]:
    """Paint a map of four cities from `seed` and write them to `root` in VIGOR's layout; returns their counts.

    Each city is a square about `LOCATION_AREA_M2` per panorama, at least three tile steps wide. Half of a
    city's panoramas (drawn from the seed) are its same-area test split, the others its training split.
    """
    if panoramas_per_city < 2:
        raise ValueError(f"panoramas_per_city must be at least 2 (a training and a test panorama), "
                         f"got {panoramas_per_city}")
    root = Path(root)
    side_m = TILE_STRIDE_M * max(3, int(np.ceil(np.sqrt(panoramas_per_city * LOCATION_AREA_M2) / TILE_STRIDE_M)))
    shape, boxes = regions_in_a_row([side_m] * len(CITIES), side_m)
    rng = np.random.default_rng([seed, VIGOR_STREAM])
    world = paint_world(rng, shape)
    counts = {}
    for index, (name, box) in enumerate(zip(CITIES, boxes, strict=True)):
        city = lay_out_city(world, name, box, panoramas_per_city, rng)
        write_city(root, city, world, cvact_pano_ids(rng, panoramas_per_city), seed, index, tuple(sat_size),
                   tuple(grd_size), progress)
        counts[name] = {"panoramas": len(city.panoramas), "satellites": len(city.tiles)}
    return {"vigor_root": str(root), "cities": counts, "city_size_m": side_m}
