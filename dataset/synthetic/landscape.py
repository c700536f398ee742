"""The landscape painted on the map: a street grid, land uses, buildings, trees, water, texture and shadows.

An irregular street grid cuts the map into blocks; each block gets a land use (residential, downtown,
industrial, farmland, park, forest, lake) with its own colours, buildings of various heights and roof
colours, trees, fields and water; a river and winding main roads cross the grid. Colours and layout vary
across the map, so each location looks different, while both views of one location show the same things.
Aerial shading holds roof slopes, canopies and the cast shadows of a sun in the south.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from dataset.synthetic.world import BUILDING, CELL_M, FIELD, GROUND, PAVED, ROAD, TREE, WATER, World, cells

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


def paint_world(rng: np.random.Generator, shape: tuple[int, int]) -> World:
    """A map of `shape` cells, painted from `rng`."""
    world = World(
        albedo=_meadow(rng, shape),
        height=np.zeros(shape, np.float32),
        kind=np.full(shape, GROUND, np.uint8),
        aerial_shade=np.full(shape, 255, np.uint8),
    )
    _lay_out_blocks(world, rng)
    _draw_river_and_main_roads(world, rng)
    _add_texture(world, rng)
    _cast_shadows(world, sun_elevation_deg=rng.uniform(45.0, 60.0))
    return world


def _meadow(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Grass and soil whose tint drifts over ~50 m: the colour of whatever no block covers."""
    coarse_shape = (shape[0] // cells(50.0) + 3, shape[1] // cells(50.0) + 3)
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
    lines, position = [], -cells(rng.uniform(0.0, 60.0))
    while position < length + cells(110.0):
        width = cells(rng.uniform(11.0, 14.0) if rng.random() < 0.2 else rng.uniform(6.0, 8.0))
        lines.append((position, width))
        position += cells(rng.uniform(45.0, 110.0))
    return lines


def _lay_out_blocks(world: World, rng: np.random.Generator) -> None:
    """Street grid, a land use per block from smooth noise, then the blocks' contents and the streets."""
    rows, cols = world.kind.shape
    row_lines, col_lines = _grid_lines(rng, rows), _grid_lines(rng, cols)
    zone_scale = cells(300.0)
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
            track = cells(1.5)
            mid = ((r0 + r1) / 2, (c0 + c1) / 2)
            box = (mid[0] - track, c0, mid[0] + track, c1) if horizontal else (r0, mid[1] - track, r1, mid[1] + track)
            _paint(world, box, colour=(150, 128, 96), kind=GROUND, height=0.0, shade=1.0)
        return
    _paint(world, box, colour=ASPHALT * rng.uniform(0.7, 1.35), kind=ROAD, height=0.0, shade=1.0)
    if width >= cells(10.0):
        r0, c0, r1, c1 = box
        line = cells(0.3)
        marking = (230, 200, 70) if rng.random() < 0.5 else (235, 235, 230)
        if horizontal:
            mid = (r0 + r1) / 2
            for start in np.arange(c0, c1, cells(9.0)):
                _paint(world, (mid - line, start, mid + line, start + cells(4.5)), colour=marking)
        else:
            mid = (c0 + c1) / 2
            for start in np.arange(r0, r1, cells(9.0)):
                _paint(world, (start, mid - line, start + cells(4.5), mid + line), colour=marking)


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
    rim = cells(0.8)
    _paint(world, (r0 + rim, c0 + rim, r1 - rim, c1 - rim), shade=0.98)
    for _ in range(rng.integers(0, 4)):  # rooftop units
        rr, cc = rng.uniform(r0 + 2 * rim, r1 - 4 * rim), rng.uniform(c0 + 2 * rim, c1 - 4 * rim)
        size = cells(rng.uniform(1.5, 3.0))
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
    radius = int(np.clip(cells(rng.uniform(1.5, 4.5)), 3, 15))
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
    lawn = _shrink(block, cells(1.8))
    _paint(world, lawn, colour=_lawn(rng), kind=GROUND)
    palette = [_roof(rng) for _ in range(4)]
    r0, c0, r1, c1 = lawn
    for side in range(4):
        along = (c0, c1) if side < 2 else (r0, r1)
        position = along[0] + cells(rng.uniform(1.0, 6.0))
        while True:
            width, depth = cells(rng.uniform(8.0, 15.0)), cells(rng.uniform(8.0, 12.0))
            setback = cells(rng.uniform(3.0, 7.0))
            if position + width > along[1] - cells(3.0):
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
            position += width + cells(rng.uniform(3.0, 9.0))
    area_m2 = (r1 - r0) * (c1 - c0) * CELL_M**2
    _scatter_trees(world, rng, lawn, int(area_m2 / rng.uniform(120.0, 400.0)))
    if rng.random() < 0.3:
        rr, cc = rng.uniform(r0 + cells(12.0), r1 - cells(12.0)), rng.uniform(c0 + cells(12.0), c1 - cells(12.0))
        pool = (rr, cc, rr + cells(rng.uniform(3.0, 5.0)), cc + cells(rng.uniform(5.0, 9.0)))
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
    if depth < 2 and max(r1 - r0, c1 - c0) > cells(45.0) and rng.random() < 0.8:
        if r1 - r0 > c1 - c0:
            cut = rng.uniform(r0 + 0.35 * (r1 - r0), r0 + 0.65 * (r1 - r0))
            halves = ((r0, c0, cut, c1), (cut, c0, r1, c1))
        else:
            cut = rng.uniform(c0 + 0.35 * (c1 - c0), c0 + 0.65 * (c1 - c0))
            halves = ((r0, c0, r1, cut), (r0, cut, r1, c1))
        for half in halves:
            _split_into_lots(world, rng, half, depth + 1, tall)
        return
    lot = _shrink(box, cells(rng.uniform(3.0, 7.0)))
    if lot[2] - lot[0] > cells(6.0) and lot[3] - lot[1] > cells(6.0):
        height = rng.uniform(12.0, 40.0) if tall else rng.uniform(6.0, 13.0)
        _building(world, rng, lot, height, _roof(rng), gable=False)


def _industrial(world: World, rng: np.random.Generator, block) -> None:
    """Gravel or asphalt yard with large low halls and a striped car park."""
    _paint(world, block, colour=_paving(rng) * 0.9, kind=PAVED, height=0.0)
    r0, c0, r1, c1 = block
    park_rows = cells(rng.uniform(10.0, 16.0))
    for c in np.arange(c0 + cells(2.0), c1 - cells(2.0), cells(2.6)):
        _paint(world, (r1 - park_rows, c, r1 - cells(1.0), c + 1), colour=(225, 225, 220))
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
    if rng.random() < 0.35 and r1 - r0 > cells(35.0) and c1 - c0 > cells(40.0):
        rr, cc = rng.uniform(r0 + cells(5.0), r1 - cells(25.0)), rng.uniform(c0 + cells(5.0), c1 - cells(35.0))
        _paint(world, (rr - cells(4.0), cc - cells(4.0), rr + cells(22.0), cc + cells(32.0)), _lawn(rng), GROUND)
        _building(world, rng, (rr, cc, rr + cells(10.0), cc + cells(12.0)), rng.uniform(5.0, 8.0), _roof(rng), True)
        _building(world, rng, (rr, cc + cells(16.0), rr + cells(14.0), cc + cells(28.0)), 7.0, _roof(rng), True)
        _scatter_trees(world, rng, (rr + cells(11.0), cc, rr + cells(20.0), cc + cells(28.0)), 5)


def _field(world: World, rng: np.random.Generator, box) -> None:
    """One crop colour with darker rows every 1.6-3.2 m, running east-west or north-south."""
    colour = CROPS[rng.integers(len(CROPS))] * rng.uniform(0.85, 1.15)
    _paint(world, box, colour=colour, kind=FIELD, height=0.0, shade=1.0)
    r0, c0, r1, c1 = _clip(world, box)
    half_period = max(cells(rng.uniform(0.8, 1.6)), 1)
    furrows, dark = world.albedo[r0:r1, c0:c1], np.clip(colour * 0.8, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        furrows[(np.arange(r0, r1) // half_period) % 2 == 0] = dark
    else:
        furrows[:, (np.arange(c0, c1) // half_period) % 2 == 0] = dark


def _park(world: World, rng: np.random.Generator, block) -> None:
    """Lawn, clusters of trees, a footpath and often a pond."""
    _paint(world, block, colour=_lawn(rng), kind=GROUND, height=0.0)
    r0, c0, r1, c1 = block
    if rng.random() < 0.6 and r1 - r0 > cells(30.0) and c1 - c0 > cells(30.0):
        margin = cells(15.0)
        centre = (int(rng.uniform(c0 + margin, c1 - margin)), int(rng.uniform(r0 + margin, r1 - margin)))
        axes = (cells(rng.uniform(8.0, 20.0)), cells(rng.uniform(6.0, 14.0)))
        _ellipse(world, centre, axes, colour=WATER_COLOURS[rng.integers(len(WATER_COLOURS))], kind=WATER)
    path = np.stack([rng.uniform(c0, c1, 4), rng.uniform(r0, r1, 4)], 1).astype(np.int32)
    _polyline(world, path, cells(2.0), colour=(196, 182, 150), kind=PAVED)
    for _ in range(rng.integers(1, 4)):
        cr, cc = rng.uniform(r0, r1), rng.uniform(c0, c1)
        spread = cells(rng.uniform(8.0, 20.0))
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
    _ellipse(world, centre, (axes[0] + cells(3.0), axes[1] + cells(3.0)), colour=(206, 190, 146), kind=PAVED)
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
        river = _wander(rng, world.kind.shape, cells(25.0))
        _polyline(world, river, cells(rng.uniform(24.0, 36.0)), colour=(196, 184, 140), kind=PAVED)
        _polyline(world, river, cells(rng.uniform(14.0, 22.0)), colour=WATER_COLOURS[0], kind=WATER)
    for _ in range(rng.integers(1, 3)):
        road = _wander(rng, world.kind.shape, cells(20.0))
        _polyline(world, road, cells(12.0), colour=SIDEWALK, kind=PAVED)
        _polyline(world, road, cells(9.0), colour=ASPHALT * 0.9, kind=ROAD)
        _polyline(world, road, cells(0.4), colour=(235, 235, 228), kind=ROAD)


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
