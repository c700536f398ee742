"""The world's frame: metres, map cells and UTM-like coordinates, the map's container, and where cameras stand.

A seeded raster map at `CELL_M` metres per cell, north up: map row 0 is the northern edge and columns grow
eastwards. A cell (row, col) lies at easting `ORIGIN_EASTING + (col + 0.5) * CELL_M` and northing
`ORIGIN_NORTHING - (row + 0.5) * CELL_M`. Every cell has an RGB albedo, a height in metres, a kind (ground,
paved, road, field, water, building, tree) and an aerial shading factor; `landscape.py` paints them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]

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


@dataclass
class World:
    """The map, row 0 = north; a box (row0, col0, row1, col1) in cells names a region of it."""

    albedo: np.ndarray  # (rows, cols, 3) uint8 RGB
    height: np.ndarray  # (rows, cols) float32 metres above the ground
    kind: np.ndarray  # (rows, cols) uint8, GROUND..TREE
    aerial_shade: np.ndarray  # (rows, cols) uint8, 255 = fully lit in the aerial imagery

    def utm(self, positions: np.ndarray) -> np.ndarray:
        """(N, 2) cells (row, col) -> (N, 2) float64 (easting, northing) in metres."""
        positions = np.asarray(positions, np.float64)
        easting = ORIGIN_EASTING + (positions[:, 1] + 0.5) * CELL_M
        return np.stack([easting, ORIGIN_NORTHING - (positions[:, 0] + 0.5) * CELL_M], axis=1)


def cells(metres: float) -> int:
    """A length in metres as a whole number of map cells."""
    return int(round(metres / CELL_M))


def regions_in_a_row(widths_m: list[float], height_m: float) -> tuple[tuple[int, int], list[Box]]:
    """A map's shape and its regions side by side, west to east: a border, the regions with gaps between, a border.

    The gap (`REGION_GAP_M`) is wider than an aerial footprint and twice the panorama's reach, so no image of
    one region shows anything of another.
    """
    border, gap = cells(BORDER_M), cells(REGION_GAP_M)
    rows = cells(height_m)
    boxes, col = [], border
    for width_m in widths_m:
        boxes.append((border, col, border + rows, col + cells(width_m)))
        col += cells(width_m) + gap
    return (2 * border + rows, col - gap + border), boxes


def sample_locations(world: World, box: Box, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` open cells (row, col) in `box`: nothing upright or wet within 3.6 m, at least MIN_SPACING_M apart."""
    angles = np.arange(16) * np.pi / 8
    ring = [(0.0, 0.0)] + [(np.sin(a) * r, np.cos(a) * r) for r in (1.2, 2.4, 3.6) for a in angles]
    ring = np.round(np.array(ring) / CELL_M).astype(np.int64)
    spacing = cells(MIN_SPACING_M)
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


