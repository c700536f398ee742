"""A procedural world written out as a small CVUSA and a small CVACT, for demos and tests without the real data.

The world
    A seeded raster map at `CELL_M` metres per cell. Every cell has an RGB albedo, a height in
    metres, a kind (ground, paved, road, field, water, building, tree) and an aerial shading factor
    (roof slopes, canopies, cast shadows of a sun in the south). An irregular street grid cuts it into
    blocks; each block gets a land use (residential, downtown, industrial, farmland, park, forest,
    lake) with its own colours, buildings of various heights and roof colours, trees, fields and
    water; a river and winding main roads cross the grid. Colours and layout vary across the map,
    so each location looks different, while both views of one location show the same things.

Coordinate frame
    UTM-like metres, north up: map row 0 is the northern edge and columns grow eastwards. A cell
    (row, col) lies at easting `ORIGIN_EASTING + (col + 0.5) * CELL_M` and northing
    `ORIGIN_NORTHING - (row + 0.5) * CELL_M`.

Samples
    A location is a cell in open space (no building, tree or water within 3.6 m). Its aerial
    image is the north-up crop of `SAT_FOOTPRINT_M` metres centred there. Its ground panorama is
    ray-marched over the height map from `EYE_HEIGHT_M` above the location out to `REACH_M`: for
    every azimuth column the running maximum of the elevation angles of the samples along the ray
    decides which sample each elevation row sees, so nearer objects hide farther ones, buildings and
    trees rise above the horizon, the sky fills the rest above and the ground texture below.
    Building walls take their roof's colour, so what stands around a location in the panorama is
    also visible in its aerial crop. The two views get their own sun, gain, colour cast and noise.
    Locations are drawn at random with only `MIN_SPACING_M` between them, so nearby aerial crops
    overlap (hard negatives; CVACT's 25 m rule matters).

Panorama convention
    Equirectangular, 360 degrees wide, elevation from +40 degrees (top row) to -50 degrees (bottom
    row), the horizon at 4/9 of the height. North sits at the centre column W/2 and the azimuth
    grows clockwise to the right: west at W/4, east at 3W/4, south at both edges.

Splits
    Training locations come from the western region of the map, validation locations from an
    eastern region separated by `REGION_GAP_M` metres, more than an aerial footprint and twice the
    ray reach, so no validation crop or panorama shares anything with a training one. In CVACT,
    `valSet` and `valSetAll` hold the same held-out indices (1-based float column vectors, as MATLAB
    writes them). CVUSA ids count from 0000001, training pairs first.

The same seed and arguments give byte-identical files (the .mat header names the seed, not a date).
The map takes about 0.12 MB per location in memory; a few thousand pairs need well under 1 GB.

Run `python -m dataset.synthetic --out DIR --num_train N --num_val M --seed S [--sat_size H W]
[--grd_size H W] [--plot PNG]`.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import json
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.io
from tqdm import tqdm

CELL_M = 0.4
SAT_FOOTPRINT_M = 80.0
EYE_HEIGHT_M = 2.0
REACH_M = 80.0
HAZE_M = 260.0
ELEVATION_TOP_DEG = 40.0
ELEVATION_BOTTOM_DEG = -50.0
RENDER_SCALE = 2  # panoramas are ray-marched at twice the size, then area-averaged
LOCATION_AREA_M2 = 45.0**2  # map area per location: sets the size of the world
MIN_SPACING_M = 8.0
REGION_GAP_M = 2 * REACH_M
BORDER_M = REACH_M + 10.0
ORIGIN_EASTING, ORIGIN_NORTHING = 500_000.0, 4_200_000.0

GROUND, PAVED, ROAD, FIELD, WATER, BUILDING, TREE = range(7)
TEXTURE_STRENGTH = np.array([0.22, 0.08, 0.07, 0.12, 0.05, 0.04, 0.25], np.float32)  # per kind

ROOFS = np.array(
    [
        (178, 84, 56), (150, 58, 48), (96, 70, 58), (88, 94, 106), (58, 60, 66), (182, 182, 176), (228, 226, 218),
        (206, 186, 140), (64, 138, 140), (66, 98, 164), (78, 122, 78), (214, 132, 60), (122, 88, 132), (222, 200, 86),
    ],
    np.float32,
)
GRASS = np.array([(92, 138, 58), (122, 150, 70), (76, 118, 52), (142, 152, 82), (104, 128, 48)], np.float32)
CROPS = np.array(
    [(218, 192, 112), (198, 168, 78), (110, 162, 70), (60, 112, 50), (132, 96, 66), (172, 142, 102), (232, 212, 64)],
    np.float32,
)
PAVING = np.array([(172, 170, 162), (202, 186, 150), (168, 102, 82), (112, 110, 112), (152, 142, 122)], np.float32)
CANOPY = np.array([(46, 96, 40), (62, 112, 46), (36, 80, 36), (88, 122, 52), (182, 112, 42), (158, 62, 42)], np.float32)
CANOPY_WEIGHTS = np.array([0.3, 0.25, 0.2, 0.15, 0.06, 0.04])
WATER_COLOURS = np.array([(46, 88, 128), (54, 104, 120), (40, 72, 104)], np.float32)
ASPHALT = np.array((78, 80, 84), np.float32)
SIDEWALK = np.array((178, 175, 168), np.float32)
LAND_USES = ("residential", "downtown", "industrial", "farmland", "park", "forest", "lake")
LAND_USE_PRIOR = np.array([0.32, 0.14, 0.1, 0.22, 0.1, 0.07, 0.05])
PANO_ID_ALPHABET = np.array(list(string.ascii_letters + string.digits + "-_"))


@dataclass
class World:
    """The map (row 0 = north) and the two regions (row0, col0, row1, col1 in cells) locations come from."""

    albedo: np.ndarray  # (rows, cols, 3) uint8 RGB
    height: np.ndarray  # (rows, cols) float32 metres above the ground
    kind: np.ndarray  # (rows, cols) uint8, GROUND..TREE
    aerial_shade: np.ndarray  # (rows, cols) uint8, 255 = fully lit in the aerial imagery
    train_box: tuple[int, int, int, int]
    val_box: tuple[int, int, int, int]

    def utm(self, cells: np.ndarray) -> np.ndarray:
        """(N, 2) cells (row, col) -> (N, 2) float64 (easting, northing) in metres."""
        cells = np.asarray(cells, np.float64)
        easting = ORIGIN_EASTING + (cells[:, 1] + 0.5) * CELL_M
        return np.stack([easting, ORIGIN_NORTHING - (cells[:, 0] + 0.5) * CELL_M], axis=1)


# ----------------------------------------------------------------------------------------------- the map


def build_world(rng: np.random.Generator, num_train: int, num_val: int) -> World:
    """A map big enough for the locations: border, training region, gap, validation region, border."""
    region_height_m = max(240.0, np.sqrt((num_train + num_val) * LOCATION_AREA_M2))
    train_width_m = max(120.0, num_train * LOCATION_AREA_M2 / region_height_m)
    val_width_m = max(120.0, num_val * LOCATION_AREA_M2 / region_height_m)
    border, gap = _cells(BORDER_M), _cells(REGION_GAP_M)
    region_rows, train_cols, val_cols = _cells(region_height_m), _cells(train_width_m), _cells(val_width_m)
    shape = (2 * border + region_rows, 2 * border + train_cols + gap + val_cols)
    world = World(
        albedo=_meadow(rng, shape),
        height=np.zeros(shape, np.float32),
        kind=np.full(shape, GROUND, np.uint8),
        aerial_shade=np.full(shape, 255, np.uint8),
        train_box=(border, border, border + region_rows, border + train_cols),
        val_box=(border, border + train_cols + gap, border + region_rows, border + train_cols + gap + val_cols),
    )
    _lay_out_blocks(world, rng)
    _draw_river_and_main_roads(world, rng)
    _add_texture(world, rng)
    _cast_shadows(world, sun_elevation_deg=rng.uniform(45.0, 60.0))
    return world


def _cells(metres: float) -> int:
    return int(round(metres / CELL_M))


def _meadow(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Grass and soil whose tint drifts over ~50 m: the colour of whatever no block covers."""
    coarse_shape = (shape[0] // _cells(50.0) + 3, shape[1] // _cells(50.0) + 3)
    mix = rng.random((*coarse_shape, 1))
    coarse = mix * GRASS[rng.integers(0, len(GRASS), coarse_shape)] + (1 - mix) * np.array((150, 138, 92))
    return cv2.resize(coarse.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _hsv(rng: np.random.Generator, hue_deg, saturation, value) -> np.ndarray:
    """An RGB colour (floats 0..255) drawn uniformly from HSV ranges, hue in degrees."""
    hue = rng.uniform(*hue_deg) % 360.0 / 360.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value)), np.float32) * 255


def _lawn(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng, (50.0, 120.0), (0.3, 0.7), (0.38, 0.64))


def _roof(rng: np.random.Generator) -> np.ndarray:
    """Half the roofs from the usual palette, half in any hue, so that neighbourhoods differ."""
    if rng.random() < 0.5:
        return ROOFS[rng.integers(len(ROOFS))] * rng.uniform(0.88, 1.12)
    return _hsv(rng, (0.0, 360.0), (0.25, 0.75), (0.3, 0.9))


def _paving(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return PAVING[rng.integers(len(PAVING))] * rng.uniform(0.85, 1.1)
    return _hsv(rng, (0.0, 50.0), (0.1, 0.5), (0.45, 0.85))


def _clip(world: World, box) -> tuple[int, int, int, int]:
    """A box (row0, col0, row1, col1) rounded to whole cells and clipped to the map."""
    r0, c0, r1, c1 = (int(round(v)) for v in box)
    return max(r0, 0), max(c0, 0), min(r1, world.kind.shape[0]), min(c1, world.kind.shape[1])


def _paint(world: World, box, colour=None, kind=None, height=None, shade=None) -> None:
    """Fill an axis-aligned box (row0, col0, row1, col1), clipped to the map, in the given layers."""
    r0, c0, r1, c1 = _clip(world, box)
    if r0 >= r1 or c0 >= c1:
        return
    if colour is not None:
        world.albedo[r0:r1, c0:c1] = np.clip(colour, 0, 255).astype(np.uint8)
    if kind is not None:
        world.kind[r0:r1, c0:c1] = kind
    if height is not None:
        world.height[r0:r1, c0:c1] = height
    if shade is not None:
        world.aerial_shade[r0:r1, c0:c1] = int(255 * shade)


def _grid_lines(rng: np.random.Generator, length: int) -> list[tuple[int, int]]:
    """Street centre lines (position, width) in cells, 45-110 m apart, every few a wider arterial."""
    lines, position = [], -_cells(rng.uniform(0.0, 60.0))
    while position < length + _cells(110.0):
        width = _cells(rng.uniform(11.0, 14.0) if rng.random() < 0.2 else rng.uniform(6.0, 8.0))
        lines.append((position, width))
        position += _cells(rng.uniform(45.0, 110.0))
    return lines


def _lay_out_blocks(world: World, rng: np.random.Generator) -> None:
    """Street grid, a land use per block from smooth noise, then the blocks' contents and the streets."""
    rows, cols = world.kind.shape
    row_lines, col_lines = _grid_lines(rng, rows), _grid_lines(rng, cols)
    zone_scale = _cells(300.0)
    zone_noise = rng.normal(size=(len(LAND_USES), rows // zone_scale + 2, cols // zone_scale + 2))
    last_zone = (zone_noise.shape[1] - 1.001, zone_noise.shape[2] - 1.001)
    uses = np.empty((len(row_lines) - 1, len(col_lines) - 1), np.int64)
    for i, ((top, top_w), (bottom, bottom_w)) in enumerate(zip(row_lines[:-1], row_lines[1:], strict=True)):
        for j, ((left, left_w), (right, right_w)) in enumerate(zip(col_lines[:-1], col_lines[1:], strict=True)):
            centre = (np.clip((top + bottom) / 2 / zone_scale, 0, last_zone[0]),
                      np.clip((left + right) / 2 / zone_scale, 0, last_zone[1]))
            score = _bilinear(zone_noise, centre) + 1.5 * np.log(LAND_USE_PRIOR) + rng.normal(0, 0.3, len(LAND_USES))
            uses[i, j] = int(np.argmax(score))
            block = (top + top_w / 2, left + left_w / 2, bottom - bottom_w / 2, right - right_w / 2)
            BLOCK_PAINTERS[LAND_USES[uses[i, j]]](world, rng, block)
    rural = np.isin(uses, [LAND_USES.index(u) for u in ("farmland", "park", "forest", "lake")])
    for i, (position, width) in enumerate(row_lines[1:-1]):  # east-west streets between block rows i and i+1
        for j in range(len(col_lines) - 1):
            segment = (position - width / 2, col_lines[j][0], position + width / 2, col_lines[j + 1][0])
            _street(world, rng, segment, width, rural[i, j] and rural[i + 1, j], horizontal=True)
    for j, (position, width) in enumerate(col_lines[1:-1]):
        for i in range(len(row_lines) - 1):
            segment = (row_lines[i][0], position - width / 2, row_lines[i + 1][0], position + width / 2)
            _street(world, rng, segment, width, rural[i, j] and rural[i, j + 1], horizontal=False)


def _bilinear(grids: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    """Each of the (K, rows, cols) grids interpolated at the fractional (row, col) `point`: (K,)."""
    r, c = point
    r0, c0 = int(r), int(c)
    fr, fc = r - r0, c - c0
    return (
        grids[:, r0, c0] * (1 - fr) * (1 - fc)
        + grids[:, r0 + 1, c0] * fr * (1 - fc)
        + grids[:, r0, c0 + 1] * (1 - fr) * fc
        + grids[:, r0 + 1, c0 + 1] * fr * fc
    )


def _street(world: World, rng: np.random.Generator, box, width: int, between_rural: bool, horizontal: bool) -> None:
    """Asphalt with a dashed centre line on wide streets; between two rural blocks often a dirt track or nothing."""
    if between_rural and rng.random() < 0.75:
        if rng.random() < 0.5:
            r0, c0, r1, c1 = box
            track = _cells(1.5)
            mid = ((r0 + r1) / 2, (c0 + c1) / 2)
            box = (mid[0] - track, c0, mid[0] + track, c1) if horizontal else (r0, mid[1] - track, r1, mid[1] + track)
            _paint(world, box, colour=(150, 128, 96), kind=GROUND, height=0.0, shade=1.0)
        return
    _paint(world, box, colour=ASPHALT * rng.uniform(0.7, 1.35), kind=ROAD, height=0.0, shade=1.0)
    if width >= _cells(10.0):
        r0, c0, r1, c1 = box
        line = _cells(0.3)
        marking = (230, 200, 70) if rng.random() < 0.5 else (235, 235, 230)
        if horizontal:
            mid = (r0 + r1) / 2
            for start in np.arange(c0, c1, _cells(9.0)):
                _paint(world, (mid - line, start, mid + line, start + _cells(4.5)), colour=marking)
        else:
            mid = (c0 + c1) / 2
            for start in np.arange(r0, r1, _cells(9.0)):
                _paint(world, (start, mid - line, start + _cells(4.5), mid + line), colour=marking)


def _building(world: World, rng: np.random.Generator, box, height: float, roof: np.ndarray, gable: bool) -> None:
    """A box of `height` metres; the aerial sees a two-tone gable or a flat roof with a dark parapet.

    A box that would overlap another building is left out: walls take the colour of the roof cell
    they border, so two roofs merged into one block would give it walls of the wrong colour.
    """
    r0, c0, r1, c1 = _clip(world, box)
    if r0 >= r1 or c0 >= c1 or (world.kind[r0:r1, c0:c1] == BUILDING).any():
        return
    _paint(world, box, colour=roof, kind=BUILDING, height=height, shade=0.92)
    r0, c0, r1, c1 = box
    if gable:
        if r1 - r0 <= c1 - c0:  # ridge runs east-west: the southern slope faces the sun
            _paint(world, (r0, c0, (r0 + r1) / 2, c1), shade=0.72)
            _paint(world, ((r0 + r1) / 2, c0, r1, c1), shade=1.0)
        else:  # ridge runs north-south: the sun grazes both slopes
            _paint(world, (r0, c0, r1, (c0 + c1) / 2), shade=0.9)
            _paint(world, (r0, (c0 + c1) / 2, r1, c1), shade=0.74)
        return
    rim = _cells(0.8)
    _paint(world, (r0 + rim, c0 + rim, r1 - rim, c1 - rim), shade=0.98)
    for _ in range(rng.integers(0, 4)):  # rooftop units
        rr, cc = rng.uniform(r0 + 2 * rim, r1 - 4 * rim), rng.uniform(c0 + 2 * rim, c1 - 4 * rim)
        size = _cells(rng.uniform(1.5, 3.0))
        _paint(world, (rr, cc, rr + size, cc + size), shade=0.8)


def _tree_stamp(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit dome heights and aerial shading (lit from the south, darker rim) for a canopy of `radius` cells."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1] / max(radius, 1)
    rr = np.hypot(yy, xx)
    dome = np.where(rr <= 1.0, np.sqrt(np.clip(1.0 - rr**2, 0.0, 1.0)) ** 0.5, 0.0)
    shade = np.clip(0.72 + 0.22 * yy - 0.25 * rr**2, 0.35, 1.0)
    return dome.astype(np.float32), shade.astype(np.float32)


TREE_STAMPS = {radius: _tree_stamp(radius) for radius in range(3, 16)}


def _tree(world: World, rng: np.random.Generator, centre, colour=None) -> None:
    """A dome-shaped canopy 1.5-4.5 m in radius and 4-12 m high; it never grows into a building."""
    radius = int(np.clip(_cells(rng.uniform(1.5, 4.5)), 3, 15))
    r, c = int(centre[0]), int(centre[1])
    rows, cols = world.kind.shape
    if not (radius <= r < rows - radius - 1 and radius <= c < cols - radius - 1):
        return
    dome, shade = TREE_STAMPS[radius]
    window = np.s_[r - radius : r + radius + 1, c - radius : c + radius + 1]
    heights = dome * rng.uniform(max(4.0, 2.2 * radius * CELL_M), 12.0)
    grow = (heights > world.height[window]) & (world.kind[window] != BUILDING)
    if colour is None:
        colour = CANOPY[rng.choice(len(CANOPY), p=CANOPY_WEIGHTS)] * rng.uniform(0.85, 1.15)
    world.height[window][grow] = heights[grow]
    world.kind[window][grow] = TREE
    world.albedo[window][grow] = np.clip(colour, 0, 255).astype(np.uint8)
    world.aerial_shade[window][grow] = (255 * shade[grow]).astype(np.uint8)


def _scatter_trees(world: World, rng: np.random.Generator, box, count: int, colour=None) -> None:
    """`count` trees at uniform random spots of the box."""
    r0, c0, r1, c1 = box
    if r1 <= r0 or c1 <= c0:
        return
    for r, c in zip(rng.uniform(r0, r1, count), rng.uniform(c0, c1, count), strict=True):
        _tree(world, rng, (r, c), colour=colour)


def _shrink(box, margin: float) -> tuple[float, float, float, float]:
    r0, c0, r1, c1 = box
    return (r0 + margin, c0 + margin, r1 - margin, c1 - margin)


def _residential(world: World, rng: np.random.Generator, block) -> None:
    """Lawn and sidewalk, houses with gable roofs along the block's edges, trees in the yards, a pool or two."""
    _paint(world, block, colour=SIDEWALK, kind=PAVED, height=0.0, shade=1.0)
    lawn = _shrink(block, _cells(1.8))
    _paint(world, lawn, colour=_lawn(rng), kind=GROUND)
    palette = [_roof(rng) for _ in range(4)]
    r0, c0, r1, c1 = lawn
    for side in range(4):
        along = (c0, c1) if side < 2 else (r0, r1)
        position = along[0] + _cells(rng.uniform(1.0, 6.0))
        while True:
            width, depth = _cells(rng.uniform(8.0, 15.0)), _cells(rng.uniform(8.0, 12.0))
            setback = _cells(rng.uniform(3.0, 7.0))
            if position + width > along[1] - _cells(3.0):
                break
            if side == 0:
                box = (r0 + setback, position, r0 + setback + depth, position + width)
            elif side == 1:
                box = (r1 - setback - depth, position, r1 - setback, position + width)
            elif side == 2:
                box = (position, c0 + setback, position + width, c0 + setback + depth)
            else:
                box = (position, c1 - setback - depth, position + width, c1 - setback)
            if box[2] - box[0] > 0 and box[3] - box[1] > 0 and box[0] >= r0 and box[2] <= r1 and box[1] >= c0:
                roof = palette[rng.integers(len(palette))] * rng.uniform(0.92, 1.08)
                _building(world, rng, box, rng.uniform(4.0, 9.0), roof, gable=rng.random() < 0.8)
            position += width + _cells(rng.uniform(3.0, 9.0))
    area_m2 = (r1 - r0) * (c1 - c0) * CELL_M**2
    _scatter_trees(world, rng, lawn, int(area_m2 / rng.uniform(120.0, 400.0)))
    if rng.random() < 0.3:
        rr, cc = rng.uniform(r0 + _cells(12.0), r1 - _cells(12.0)), rng.uniform(c0 + _cells(12.0), c1 - _cells(12.0))
        pool = (rr, cc, rr + _cells(rng.uniform(3.0, 5.0)), cc + _cells(rng.uniform(5.0, 9.0)))
        _paint(world, pool, colour=(84, 172, 204), kind=WATER)


def _downtown(world: World, rng: np.random.Generator, block) -> None:
    """A paved plaza split into lots, each holding one tall flat-roofed building, a few trees in between."""
    _paint(world, block, colour=_paving(rng), kind=PAVED, height=0.0)
    _split_into_lots(world, rng, block, depth=0, tall=True)
    r0, c0, r1, c1 = block
    _scatter_trees(world, rng, block, int((r1 - r0) * (c1 - c0) * CELL_M**2 / 500.0))


def _split_into_lots(world: World, rng: np.random.Generator, box, depth: int, tall: bool) -> None:
    """Halve big lots across their long side (twice at most), then one flat-roofed building per lot."""
    r0, c0, r1, c1 = box
    if depth < 2 and max(r1 - r0, c1 - c0) > _cells(45.0) and rng.random() < 0.8:
        if r1 - r0 > c1 - c0:
            cut = rng.uniform(r0 + 0.35 * (r1 - r0), r0 + 0.65 * (r1 - r0))
            halves = ((r0, c0, cut, c1), (cut, c0, r1, c1))
        else:
            cut = rng.uniform(c0 + 0.35 * (c1 - c0), c0 + 0.65 * (c1 - c0))
            halves = ((r0, c0, r1, cut), (r0, cut, r1, c1))
        for half in halves:
            _split_into_lots(world, rng, half, depth + 1, tall)
        return
    lot = _shrink(box, _cells(rng.uniform(3.0, 7.0)))
    if lot[2] - lot[0] > _cells(6.0) and lot[3] - lot[1] > _cells(6.0):
        height = rng.uniform(12.0, 40.0) if tall else rng.uniform(6.0, 13.0)
        _building(world, rng, lot, height, _roof(rng), gable=False)


def _industrial(world: World, rng: np.random.Generator, block) -> None:
    """Gravel or asphalt yard with large low halls and a striped car park."""
    _paint(world, block, colour=_paving(rng) * 0.9, kind=PAVED, height=0.0)
    r0, c0, r1, c1 = block
    park_rows = _cells(rng.uniform(10.0, 16.0))
    for c in np.arange(c0 + _cells(2.0), c1 - _cells(2.0), _cells(2.6)):
        _paint(world, (r1 - park_rows, c, r1 - _cells(1.0), c + 1), colour=(225, 225, 220))
    _split_into_lots(world, rng, (r0, c0, r1 - park_rows, c1), depth=0, tall=False)


def _farmland(world: World, rng: np.random.Generator, block) -> None:
    """Strips of fields with crop rows, hedgerow trees on some edges, now and then a farmhouse and a barn."""
    r0, c0, r1, c1 = block
    across = rng.random() < 0.5  # strips side by side from west to east, else from north to south
    bounds = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, rng.integers(0, 3))), [1.0]])
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        if across:
            field = (r0, c0 + start * (c1 - c0), r1, c0 + stop * (c1 - c0))
            hedge = (r0, field[1], r1, field[1] + 1)
        else:
            field = (r0 + start * (r1 - r0), c0, r0 + stop * (r1 - r0), c1)
            hedge = (field[0], c0, field[0] + 1, c1)
        _field(world, rng, field)
        if rng.random() < 0.4:
            _scatter_trees(world, rng, hedge, int(max(r1 - r0, c1 - c0) * CELL_M / 6.0))
    if rng.random() < 0.35 and r1 - r0 > _cells(35.0) and c1 - c0 > _cells(40.0):
        rr, cc = rng.uniform(r0 + _cells(5.0), r1 - _cells(25.0)), rng.uniform(c0 + _cells(5.0), c1 - _cells(35.0))
        _paint(world, (rr - _cells(4.0), cc - _cells(4.0), rr + _cells(22.0), cc + _cells(32.0)), _lawn(rng), GROUND)
        _building(world, rng, (rr, cc, rr + _cells(10.0), cc + _cells(12.0)), rng.uniform(5.0, 8.0), _roof(rng), True)
        _building(world, rng, (rr, cc + _cells(16.0), rr + _cells(14.0), cc + _cells(28.0)), 7.0, _roof(rng), True)
        _scatter_trees(world, rng, (rr + _cells(11.0), cc, rr + _cells(20.0), cc + _cells(28.0)), 5)


def _field(world: World, rng: np.random.Generator, box) -> None:
    """One crop colour with darker rows every 1.6-3.2 m, running east-west or north-south."""
    colour = CROPS[rng.integers(len(CROPS))] * rng.uniform(0.85, 1.15)
    _paint(world, box, colour=colour, kind=FIELD, height=0.0, shade=1.0)
    r0, c0, r1, c1 = _clip(world, box)
    half_period = max(_cells(rng.uniform(0.8, 1.6)), 1)
    furrows, dark = world.albedo[r0:r1, c0:c1], np.clip(colour * 0.8, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        furrows[(np.arange(r0, r1) // half_period) % 2 == 0] = dark
    else:
        furrows[:, (np.arange(c0, c1) // half_period) % 2 == 0] = dark


def _park(world: World, rng: np.random.Generator, block) -> None:
    """Lawn, clusters of trees, a footpath and often a pond."""
    _paint(world, block, colour=_lawn(rng), kind=GROUND, height=0.0)
    r0, c0, r1, c1 = block
    if rng.random() < 0.6 and r1 - r0 > _cells(30.0) and c1 - c0 > _cells(30.0):
        margin = _cells(15.0)
        centre = (int(rng.uniform(c0 + margin, c1 - margin)), int(rng.uniform(r0 + margin, r1 - margin)))
        axes = (_cells(rng.uniform(8.0, 20.0)), _cells(rng.uniform(6.0, 14.0)))
        _ellipse(world, centre, axes, colour=WATER_COLOURS[rng.integers(len(WATER_COLOURS))], kind=WATER)
    path = np.stack([rng.uniform(c0, c1, 4), rng.uniform(r0, r1, 4)], 1).astype(np.int32)
    _polyline(world, path, _cells(2.0), colour=(196, 182, 150), kind=PAVED)
    for _ in range(rng.integers(1, 4)):
        cr, cc = rng.uniform(r0, r1), rng.uniform(c0, c1)
        spread = _cells(rng.uniform(8.0, 20.0))
        _scatter_trees(world, rng, (cr - spread, cc - spread, cr + spread, cc + spread), int(rng.integers(4, 14)))


def _forest(world: World, rng: np.random.Generator, block) -> None:
    """Dense trees of one or two kinds over dark undergrowth."""
    _paint(world, block, colour=(70, 92, 46), kind=GROUND, height=0.0, shade=0.85)
    r0, c0, r1, c1 = block
    colour = CANOPY[rng.integers(0, 4)] * rng.uniform(0.85, 1.1)
    _scatter_trees(world, rng, block, int((r1 - r0) * (c1 - c0) * CELL_M**2 / 30.0), colour=colour)


def _lake(world: World, rng: np.random.Generator, block) -> None:
    """A lake with a sandy shore filling most of the block."""
    r0, c0, r1, c1 = block
    _paint(world, block, colour=_lawn(rng), kind=GROUND, height=0.0)
    centre = (int((c0 + c1) / 2), int((r0 + r1) / 2))
    axes = (max(int((c1 - c0) * 0.45), 1), max(int((r1 - r0) * 0.45), 1))
    _ellipse(world, centre, (axes[0] + _cells(3.0), axes[1] + _cells(3.0)), colour=(206, 190, 146), kind=PAVED)
    _ellipse(world, centre, axes, colour=WATER_COLOURS[rng.integers(len(WATER_COLOURS))], kind=WATER)


BLOCK_PAINTERS = {
    "residential": _residential,
    "downtown": _downtown,
    "industrial": _industrial,
    "farmland": _farmland,
    "park": _park,
    "forest": _forest,
    "lake": _lake,
}


def _ellipse(world: World, centre, axes, colour, kind: int) -> None:
    """A flat ellipse ((col, row) centre) that clears whatever stood there."""
    for layer, value in ((world.albedo, tuple(float(v) for v in colour)), (world.kind, kind), (world.height, 0.0)):
        cv2.ellipse(layer, centre, axes, 0, 0, 360, value, -1)
    cv2.ellipse(world.aerial_shade, centre, axes, 0, 0, 360, 255, -1)


def _polyline(world: World, points: np.ndarray, width: int, colour, kind: int) -> None:
    """A flat band along (col, row) points that clears whatever stood there (bridges over water included)."""
    for layer, value in ((world.albedo, tuple(float(v) for v in colour)), (world.kind, kind), (world.height, 0.0)):
        cv2.polylines(layer, [points], False, value, width)
    cv2.polylines(world.aerial_shade, [points], False, 255, width)


def _wander(rng: np.random.Generator, shape: tuple[int, int], step: int) -> np.ndarray:
    """A smooth random walk crossing the map from west to east, as (col, row) points."""
    rows, cols = shape
    points, heading = [(0.0, rng.uniform(0.2, 0.8) * rows)], rng.uniform(-0.4, 0.4)
    while points[-1][0] < cols:
        heading = np.clip(heading + rng.normal(0, 0.15), -0.9, 0.9)
        col, row = points[-1]
        points.append((col + step * np.cos(heading), np.clip(row + step * np.sin(heading), 0, rows - 1)))
    return np.array(points, np.int32)


def _draw_river_and_main_roads(world: World, rng: np.random.Generator) -> None:
    """A river (often) and one or two winding main roads over the grid; the roads bridge the river."""
    if rng.random() < 0.7:
        river = _wander(rng, world.kind.shape, _cells(25.0))
        _polyline(world, river, _cells(rng.uniform(24.0, 36.0)), colour=(196, 184, 140), kind=PAVED)
        _polyline(world, river, _cells(rng.uniform(14.0, 22.0)), colour=WATER_COLOURS[0], kind=WATER)
    for _ in range(rng.integers(1, 3)):
        road = _wander(rng, world.kind.shape, _cells(20.0))
        _polyline(world, road, _cells(12.0), colour=SIDEWALK, kind=PAVED)
        _polyline(world, road, _cells(9.0), colour=ASPHALT * 0.9, kind=ROAD)
        _polyline(world, road, _cells(0.4), colour=(235, 235, 228), kind=ROAD)


def _add_texture(world: World, rng: np.random.Generator) -> None:
    """Grain and blotches scaled per kind (grass rough, roofs smooth), from one tiled noise texture."""
    tile = 512
    fine = rng.normal(size=(tile, tile)).astype(np.float32)
    blotches = cv2.resize(rng.normal(size=(tile // 16, tile // 16)).astype(np.float32), (tile, tile),
                          interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(fine, (0, 0), 0.8) * 1.6 + blotches * 0.7
    texture = np.tile(texture, (1, world.kind.shape[1] // tile + 1))[:, : world.kind.shape[1]]
    for start in range(0, world.kind.shape[0], tile):
        stop = min(start + tile, world.kind.shape[0])
        strength = TEXTURE_STRENGTH[world.kind[start:stop]]
        factor = 1.0 + strength * texture[: stop - start]
        world.albedo[start:stop] = np.clip(world.albedo[start:stop] * factor[..., None], 0, 255).astype(np.uint8)


def _cast_shadows(world: World, sun_elevation_deg: float) -> None:
    """Darken cells that something to their south hides from a southern sun (the aerial imagery's noon).

    A cell at row i is in shadow when max over j > i of (h[j] - (j - i) * drop) exceeds h[i], with
    drop the sun ray's rise per cell: a reversed running maximum of h[j] - j * drop along each column.
    """
    drop = CELL_M * np.tan(np.deg2rad(sun_elevation_deg))
    rows = world.height.shape[0]
    for start in range(0, world.height.shape[1], 1024):
        heights = world.height[:, start : start + 1024]
        ramp = (np.arange(rows, dtype=np.float32) * drop)[:, None]
        lowered = heights - ramp
        occluder = np.maximum.accumulate(lowered[::-1], axis=0)[::-1]
        shaded = np.zeros(heights.shape, bool)
        shaded[:-1] = occluder[1:] > lowered[:-1] + 0.05
        shade = world.aerial_shade[:, start : start + 1024]
        shade[shaded] = (shade[shaded] * 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- locations


def sample_locations(world: World, box: tuple[int, int, int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` open cells (row, col) in `box`: nothing upright or wet within 3.6 m, at least MIN_SPACING_M apart."""
    angles = np.arange(16) * np.pi / 8
    ring = [(0.0, 0.0)] + [(np.sin(a) * r, np.cos(a) * r) for r in (1.2, 2.4, 3.6) for a in angles]
    ring = np.round(np.array(ring) / CELL_M).astype(np.int64)
    spacing = _cells(MIN_SPACING_M)
    taken: dict[tuple[int, int], list[np.ndarray]] = {}
    chosen: list[np.ndarray] = []
    for _ in range(1000):
        candidates = rng.integers(box[:2], box[2:], size=(2048, 2))
        around = candidates[:, None, :] + ring[None]
        kinds = world.kind[around[..., 0], around[..., 1]]
        open_ = (world.height[around[..., 0], around[..., 1]].max(1) < 0.3) & (kinds != WATER).all(1)
        for cell in candidates[open_]:
            key = (int(cell[0] // spacing), int(cell[1] // spacing))
            near = [p for dr in (-1, 0, 1) for dc in (-1, 0, 1) for p in taken.get((key[0] + dr, key[1] + dc), [])]
            if all(np.hypot(*(cell - p)) >= spacing for p in near):
                taken.setdefault(key, []).append(cell)
                chosen.append(cell)
                if len(chosen) == count:
                    return np.array(chosen)
    raise RuntimeError(f"could only place {len(chosen)} of {count} locations in the region {box}")


# ----------------------------------------------------------------------------------------------- the two views


@dataclass
class Lighting:
    """Per-view appearance: a global gain, a per-channel colour cast, gamma and sensor noise."""

    gain: float
    cast: np.ndarray
    gamma: float
    noise: float

    @classmethod
    def draw(cls, rng: np.random.Generator, spread: float) -> Lighting:
        return cls(
            gain=rng.uniform(1 - spread, 1 + spread),
            cast=rng.uniform(1 - spread / 2, 1 + spread / 2, 3),
            gamma=rng.uniform(1 - spread, 1 + spread),
            noise=rng.uniform(2.0, 5.0),
        )

    def apply(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Float RGB in 0..255 -> uint8 with this view's gain, cast, gamma and noise."""
        out = np.clip(rgb * (self.gain * self.cast / 255.0).astype(np.float32), 0.0, 1.0) ** np.float32(self.gamma)
        out = out * 255.0 + rng.standard_normal(out.shape, np.float32) * np.float32(self.noise)
        return np.clip(out, 0, 255).astype(np.uint8)


def render_aerial(world: World, cell: np.ndarray, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The north-up SAT_FOOTPRINT_M crop centred on `cell`, resized to `size_hw`: uint8 RGB (H, W, 3)."""
    half = _cells(SAT_FOOTPRINT_M) // 2
    window = np.s_[cell[0] - half : cell[0] + half, cell[1] - half : cell[1] + half]
    shade = world.aerial_shade[window].astype(np.float32)[..., None] / 255.0
    rgb = world.albedo[window].astype(np.float32) * shade
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.6)
    interpolation = cv2.INTER_AREA if size_hw[0] < 2 * half else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (size_hw[1], size_hw[0]), interpolation=interpolation)
    return Lighting.draw(rng, spread=0.06).apply(rgb, rng)


RAY_DISTANCES_M = np.arange(CELL_M, REACH_M, CELL_M, dtype=np.float32)


def render_panorama(world: World, cell: np.ndarray, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The 360-degree panorama EYE_HEIGHT_M above `cell` (north at the centre column): uint8 RGB (H, W, 3).

    Ray-marched at RENDER_SCALE times the size: upright things (buildings, trees) come from the first
    sample along each azimuth whose running-maximum elevation angle reaches a row; the ground below the
    horizon is sampled bilinearly where each row's ray meets the flat ground (a polar view of the map).
    """
    rows, cols = size_hw[0] * RENDER_SCALE, size_hw[1] * RENDER_SCALE
    row_angle = np.deg2rad(ELEVATION_TOP_DEG - ELEVATION_BOTTOM_DEG) / rows
    azimuth = ((np.arange(cols) + 0.5) / cols * 2 * np.pi - np.pi).astype(np.float32)  # clockwise from north
    elevation = (np.deg2rad(ELEVATION_TOP_DEG) - (np.arange(rows) + 0.5) * row_angle).astype(np.float32)
    steps = len(RAY_DISTANCES_M)
    sample_row = cell[0] - np.rint(RAY_DISTANCES_M[:, None] * np.cos(azimuth) / CELL_M).astype(np.intp)
    sample_col = cell[1] + np.rint(RAY_DISTANCES_M[:, None] * np.sin(azimuth) / CELL_M).astype(np.intp)
    slope = (world.height[sample_row, sample_col] - EYE_HEIGHT_M) / RAY_DISTANCES_M[:, None]
    top = np.arctan(np.maximum.accumulate(slope, axis=0))  # (steps, cols), non-decreasing along each ray

    # the topmost row each sample reaches; where it first drops along a ray, that sample is the first
    # one seen by that row, and a running minimum down the rows hands it on to the rows below
    reached = np.clip(np.ceil((np.deg2rad(ELEVATION_TOP_DEG) - top) / row_angle - 0.5), 0, rows).astype(np.intp)
    new = np.ones(reached.shape, bool)
    new[1:] = reached[1:] < reached[:-1]
    new_step, new_col = np.nonzero(new)
    first = np.full((rows + 1, cols), steps, np.intp)
    first[reached[new], new_col] = new_step
    first = np.minimum.accumulate(first, axis=0)[:rows]
    step = np.minimum(first, steps - 1)
    column = np.arange(cols)[None, :]
    hit_row, hit_col = sample_row[step, column], sample_col[step, column]
    hit_kind = world.kind[hit_row, hit_col]
    upright = (first < steps) & ((hit_kind == BUILDING) | (hit_kind == TREE))

    sun_azimuth, sun_elevation = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(20.0, 65.0))
    sky_horizon = (np.array((196, 212, 228)) * rng.uniform(0.9, 1.05, 3)).astype(np.float32)
    sky_zenith = (np.array((84, 136, 206)) * rng.uniform(0.8, 1.1, 3)).astype(np.float32)
    sky_rows = int(np.sum(elevation > 0))
    ground_distance = np.minimum(EYE_HEIGHT_M / np.tan(-elevation[sky_rows:]), REACH_M)[:, None]
    colour = np.empty((rows, cols, 3), np.float32)
    colour[:sky_rows] = _sky(rng, elevation[:sky_rows], azimuth, sky_horizon, sky_zenith)
    ground = _ground(world, cell, ground_distance, azimuth, sky_horizon)
    colour[sky_rows:] = ground * (0.7 + 0.3 * np.sin(sun_elevation))

    distance = np.zeros((rows, cols), np.float32)
    distance[sky_rows:] = ground_distance
    distance[upright] = RAY_DISTANCES_M[step[upright]]
    ray_height = EYE_HEIGHT_M + distance * np.tan(elevation)[:, None]
    surface = world.albedo[hit_row[upright], hit_col[upright]].astype(np.float32)
    top_height = world.height[hit_row[upright], hit_col[upright]]
    relative = ray_height[upright] / np.maximum(top_height, 0.1)
    is_tree = hit_kind[upright] == TREE
    wall = _wall_shading(world, hit_row[upright], hit_col[upright], azimuth[np.nonzero(upright)[1]], sun_azimuth)
    shading = np.where(is_tree, np.where(relative < 0.15, 0.45, 0.55 + 0.5 * relative), wall)
    surface *= shading[:, None]
    floor = np.mod(ray_height[upright], 3.0)
    windows = ~is_tree & (floor > 1.0) & (floor < 2.1) & (top_height > 3.5)
    surface[windows] = surface[windows] * 0.55 + np.array((18.0, 22.0, 28.0), np.float32)
    colour[upright] = surface

    haze = (1.0 - np.exp(-distance / HAZE_M))[..., None]
    haze[:sky_rows][~upright[:sky_rows]] = 0.0
    colour = colour * (1 - haze) + sky_horizon * haze
    colour = cv2.resize(colour, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    return Lighting.draw(rng, spread=0.08).apply(colour, rng)


def _ground(world: World, cell: np.ndarray, distance: np.ndarray, azimuth: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Albedo where each (row distance, column azimuth) ray meets the ground, bilinear; water mirrors the sky."""
    radius = _cells(REACH_M) + 2
    window = np.s_[cell[0] - radius : cell[0] + radius + 1, cell[1] - radius : cell[1] + radius + 1]
    map_col = (radius + distance * np.sin(azimuth) / CELL_M).astype(np.float32)
    map_row = (radius - distance * np.cos(azimuth) / CELL_M).astype(np.float32)
    albedo = cv2.remap(np.ascontiguousarray(world.albedo[window]), map_col, map_row, cv2.INTER_LINEAR)
    kind = cv2.remap(np.ascontiguousarray(world.kind[window]), map_col, map_row, cv2.INTER_NEAREST)
    colour = albedo.astype(np.float32)
    water = kind == WATER
    colour[water] = 0.6 * colour[water] + 0.4 * sky
    return colour


def _wall_shading(world: World, rows: np.ndarray, cols: np.ndarray, ray_azimuth: np.ndarray, sun_azimuth: float):
    """Lambert factor of the wall a ray hits, its outward normal taken from the height map's gradient."""
    east = world.height[rows, cols - 1] - world.height[rows, cols + 1]
    north = world.height[rows + 1, cols] - world.height[rows - 1, cols]
    length = np.hypot(east, north)
    flat = length < 1e-3  # inside a roof: the wall faces the viewer
    east = np.where(flat, -np.sin(ray_azimuth), east / np.maximum(length, 1e-3))
    north = np.where(flat, -np.cos(ray_azimuth), north / np.maximum(length, 1e-3))
    return 0.55 + 0.45 * np.clip(east * np.sin(sun_azimuth) + north * np.cos(sun_azimuth), 0.0, 1.0)


def _sky(rng: np.random.Generator, elevation: np.ndarray, azimuth: np.ndarray, horizon: np.ndarray, zenith: np.ndarray):
    """Blue gradient from a pale horizon up to the zenith, with a few soft clouds: (rows, cols, 3)."""
    t = np.clip(elevation / np.deg2rad(ELEVATION_TOP_DEG), 0.0, 1.0)[:, None, None] ** 0.7
    sky = (1 - t) * horizon + t * zenith
    cloud = np.zeros((len(elevation), len(azimuth)), np.float32)
    for _ in range(rng.integers(0, 6)):
        centre_az, centre_el = rng.uniform(-np.pi, np.pi), np.deg2rad(rng.uniform(8.0, 38.0))
        width, height = np.deg2rad(rng.uniform(10.0, 40.0)), np.deg2rad(rng.uniform(3.0, 8.0))
        turn = np.angle(np.exp(1j * (azimuth - centre_az)))
        cloud += np.exp(-((turn / width)[None] ** 2) - ((elevation - centre_el) / height)[:, None] ** 2)
    cloud = np.clip(cloud, 0.0, 0.9)[..., None]
    return sky * (1 - cloud) + np.array((238.0, 240.0, 244.0), np.float32) * cloud


# ----------------------------------------------------------------------------------------------- the layouts


def _encode(image_rgb: np.ndarray, suffix: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if suffix == ".jpg" else []
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {suffix} image")
    return data.tobytes()


def _pano_ids(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct 22-character ids drawn from the alphabet of real CVACT panoIds."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids["".join(rng.choice(PANO_ID_ALPHABET, 22))] = None
    return list(ids)


def _write_mat(path: Path, content: dict[str, Any], seed: int) -> None:
    """scipy.io.savemat, with the header's creation time replaced so that equal worlds give equal files."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, content)
    data = bytearray(buffer.getvalue())
    data[:116] = f"MATLAB 5.0 MAT-file, synthetic world (seed {seed})".encode().ljust(116)
    path.write_bytes(bytes(data))


def write_layouts(out_dir: Path, cvusa_ids: list[str], pano_ids: list[str], utm: np.ndarray, num_train: int,
                  seed: int) -> None:
    """The split files: CVUSA's 19zl CSVs and CVACT's ACT_data.mat (images are written as they are rendered)."""
    splits = out_dir / "CVUSA" / "splits"
    for name, ids in (("train-19zl.csv", cvusa_ids[:num_train]), ("val-19zl.csv", cvusa_ids[num_train:])):
        lines = [f"bingmap/19/{i}.jpg,streetview/panos/{i}.jpg,streetview/annotations/{i}.png\n" for i in ids]
        (splits / name).write_text("".join(lines))
    train = np.arange(1, num_train + 1, dtype=np.float64)[:, None]
    val = np.arange(num_train + 1, len(pano_ids) + 1, dtype=np.float64)[:, None]
    content = {
        "panoIds": np.array(pano_ids),
        "utm": utm.astype(np.float64),
        "trainSet": {"trainInd": train},
        "valSet": {"valInd": val},
        "valSetAll": {"valInd": val},
    }
    _write_mat(out_dir / "CVACT" / "ACT_data.mat", content, seed)


def generate(
    out_dir: str | Path,
    num_train: int,
    num_val: int,
    seed: int = 0,
    sat_size: tuple[int, int] = (256, 256),
    grd_size: tuple[int, int] = (128, 512),
    progress: bool = True,
) -> dict[str, Any]:
    """Build a world from `seed` and write `num_train` + `num_val` pairs to out_dir/CVUSA and out_dir/CVACT.

    Returns a summary: the counts, seed, both roots, the image sizes, metres per map cell and per
    aerial pixel, the map's size in metres and the seconds it took.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be at least 1, got {num_train} and {num_val}")
    for name, size in (("sat_size", sat_size), ("grd_size", grd_size)):
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"{name} must be (height, width) of at least 8 pixels each, got {tuple(size)}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    for folder in ("CVUSA/sat", "CVUSA/grd", "CVUSA/splits", "CVACT/sat", "CVACT/grd"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    world = build_world(rng, num_train, num_val)
    cells = np.concatenate([
        sample_locations(world, world.train_box, num_train, rng),
        sample_locations(world, world.val_box, num_val, rng),
    ])
    cvusa_ids = [f"{n:07d}" for n in range(1, len(cells) + 1)]
    pano_ids = _pano_ids(rng, len(cells))
    for index in tqdm(range(len(cells)), desc="synthetic pairs", unit="pair", disable=not progress):
        view_rng = np.random.default_rng([seed, index])
        sat = _encode(render_aerial(world, cells[index], tuple(sat_size), view_rng), ".jpg")
        grd = render_panorama(world, cells[index], tuple(grd_size), view_rng)
        (out_dir / "CVUSA" / "sat" / f"{cvusa_ids[index]}.jpg").write_bytes(sat)
        (out_dir / "CVUSA" / "grd" / f"{cvusa_ids[index]}.png").write_bytes(_encode(grd, ".png"))
        (out_dir / "CVACT" / "sat" / f"{pano_ids[index]}_satView_polish.jpg").write_bytes(sat)
        (out_dir / "CVACT" / "grd" / f"{pano_ids[index]}_grdView.jpg").write_bytes(_encode(grd, ".jpg"))
    write_layouts(out_dir, cvusa_ids, pano_ids, world.utm(cells), num_train, seed)
    return {
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
        "cvusa_root": str(out_dir / "CVUSA"),
        "cvact_root": str(out_dir / "CVACT"),
        "sat_size": tuple(sat_size),
        "grd_size": tuple(grd_size),
        "map_metres_per_cell": CELL_M,
        "sat_metres_per_pixel": SAT_FOOTPRINT_M / sat_size[1],
        "world_size_m": (world.kind.shape[0] * CELL_M, world.kind.shape[1] * CELL_M),
        "seconds": round(time.perf_counter() - start, 2),
    }


# ----------------------------------------------------------------------------------------------- the plot


def plot_pairs(root: str | Path, png_path: str | Path, n: int = 6, split: str = "val") -> Path:
    """Save `n` aerial/panorama pairs of a written world (its folder or its CVUSA folder) side by side as a PNG.

    The aerial images get a red cross at the camera's position, the panoramas compass ticks (S W N E S,
    as utils.figures.label_panorama draws them; not imported here, to keep torch out of the generator).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    root = Path(root)
    cvusa = root / "CVUSA" if (root / "CVUSA").is_dir() else root
    csv_path = cvusa / "splits" / f"{split}-19zl.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found: expected a folder written by dataset.synthetic.generate")
    ids = [Path(line.split(",")[0]).stem for line in csv_path.read_text().splitlines() if line.strip()]
    ids = [ids[i] for i in np.linspace(0, len(ids) - 1, min(n, len(ids))).astype(int)]
    figure = Figure(figsize=(11.0, 2.25 * len(ids)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(ids), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 4]})
    for (sat_axis, grd_axis), pair_id in zip(axes, ids, strict=True):
        sat = cv2.cvtColor(cv2.imread(str(cvusa / "sat" / f"{pair_id}.jpg")), cv2.COLOR_BGR2RGB)
        grd = cv2.cvtColor(cv2.imread(str(cvusa / "grd" / f"{pair_id}.png")), cv2.COLOR_BGR2RGB)
        sat_axis.imshow(sat)
        sat_axis.plot([sat.shape[1] / 2 - 0.5], [sat.shape[0] / 2 - 0.5], marker="+", color="red", markersize=10, mew=2)
        sat_axis.set_title(f"{pair_id}, north up", fontsize=8)
        sat_axis.set_axis_off()
        grd_axis.imshow(grd)
        width = grd.shape[1]
        grd_axis.set_xticks([0, width / 4, width / 2, 3 * width / 4, width], ["S", "W", "N", "E", "S"], fontsize=9)
        grd_axis.set_yticks([])
    figure.savefig(png_path, dpi=90)
    return Path(png_path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Write a synthetic world as CVUSA and CVACT layouts.")
    parser.add_argument("--out", required=True, type=Path, help="folder that receives CVUSA/ and CVACT/")
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sat_size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--grd_size", type=int, nargs=2, default=(128, 512), metavar=("H", "W"))
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG", help="also save a few pairs as a PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    summary = generate(args.out, args.num_train, args.num_val, args.seed, tuple(args.sat_size), tuple(args.grd_size),
                       progress=not args.quiet)
    if args.plot is not None:
        summary["plot"] = str(plot_pairs(args.out, args.plot))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
