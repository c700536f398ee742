"""The two views of a location: the north-up aerial crop, and the panorama ray-marched over the height map.

The panorama is equirectangular, 360 degrees wide, elevation from +40 degrees (top row) to -50 degrees (bottom
row), the horizon at 4/9 of the height. North sits at the centre column W/2 and the azimuth grows clockwise
to the right: west at W/4, east at 3W/4, south at both edges. For every azimuth column the running maximum
of the elevation angles of the samples along the ray decides which sample each elevation row sees, so nearer
objects hide farther ones. Building walls take their roof's colour, so what stands around a location in the
panorama is also visible in its aerial crop. The two views get their own sun, gain, colour cast and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dataset.synthetic.world import (
    BUILDING,
    CELL_M,
    ELEVATION_BOTTOM_DEG,
    ELEVATION_TOP_DEG,
    EYE_HEIGHT_M,
    HAZE_M,
    REACH_M,
    RENDER_SCALE,
    SAT_FOOTPRINT_M,
    TREE,
    WATER,
    World,
    cells,
)


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
    half = cells(SAT_FOOTPRINT_M) // 2
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
    radius = cells(REACH_M) + 2
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


def encode(image_rgb: np.ndarray, suffix: str) -> bytes:
    """An RGB image as the bytes of a .jpg (quality 92) or .png file."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if suffix == ".jpg" else []
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {suffix} image")
    return data.tobytes()
