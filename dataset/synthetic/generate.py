"""One call that writes the whole synthetic world: CVUSA and CVACT from one map, VIGOR from another."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dataset.synthetic.cvact import cvact_pano_ids, make_cvact_folders, write_act_data, write_cvact_pair
from dataset.synthetic.cvusa import cvusa_ids, make_cvusa_folders, write_cvusa_pair, write_cvusa_splits
from dataset.synthetic.landscape import paint_world
from dataset.synthetic.orthophoto import write_orthophoto, write_panorama_positions
from dataset.synthetic.render import encode, render_aerial, render_panorama
from dataset.synthetic.vigor import generate_vigor
from dataset.synthetic.world import CELL_M, LOCATION_AREA_M2, SAT_FOOTPRINT_M, World, regions_in_a_row, sample_locations

Sizes = tuple[tuple[int, int], tuple[int, int]]  # (aerial (H, W), panorama (H, W))

# The benchmarks' own files: CVUSA's aerial JPEG 750x750 and panorama JPEG 1232x224 (W x H), in the download's
# layout; CVACT's 1200x1200 aerial and 1664x832 panorama; VIGOR's 640x640 aerial PNG and 2048x1024 panorama.
REAL_FILE_SIZES: dict[str, Sizes] = {
    "CVUSA": ((750, 750), (224, 1232)),
    "CVACT": ((1200, 1200), (832, 1664)),
    "VIGOR": ((640, 640), (1024, 2048)),
}


def generate(
    out_dir: str | Path,
    num_train: int,
    num_val: int,
    seed: int = 0,
    sat_size: tuple[int, int] = (256, 256),
    grd_size: tuple[int, int] = (128, 512),
    progress: bool = True,
    vigor_per_city: int | None = None,
    real_sizes: bool = False,
    cvact: bool = True,
    orthophoto: bool = True,
) -> dict[str, Any]:
    """Write `num_train` + `num_val` pairs to out_dir/CVUSA and out_dir/CVACT, and four cities to out_dir/VIGOR.

    Training locations come from the western region of the map, validation locations from an eastern one,
    `REGION_GAP_M` apart, so no validation image shares anything with a training one. VIGOR gets
    `vigor_per_city` panoramas in each city (default: a quarter of all pairs, so about as many panoramas in
    all; 0: no VIGOR). Returns a summary: the counts, seed, the roots, the image sizes, metres per map cell
    and per aerial pixel, the map's size in metres and the seconds it took.

    `real_sizes` writes every file at the size and in the format of the benchmark's own (`REAL_FILE_SIZES`,
    CVUSA in the download's layout) in place of `sat_size` and `grd_size`, for the loaders to resize as they
    resize real data; each dataset's images are then rendered at its own size. `cvact=False` leaves CVACT out
    (at real sizes its panoramas take four times as long to render as CVUSA's pairs).

    `orthophoto` also writes the CVUSA/CVACT map whole as out_dir/orthophoto/map.tif, a GeoTIFF in UTM zone 10 N
    at the aerial images' ground resolution, and out_dir/orthophoto/panoramas.csv, each CVUSA panorama's true
    latitude and longitude (`orthophoto.py`).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be at least 1, got {num_train} and {num_val}")
    for name, size in (("sat_size", sat_size), ("grd_size", grd_size)):
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"{name} must be (height, width) of at least 8 pixels each, got {tuple(size)}")
    if vigor_per_city is None:
        vigor_per_city = max(2, -(-(num_train + num_val) // 4))
    start = time.perf_counter()
    out_dir = Path(out_dir)
    cvusa_root, cvact_root = out_dir / "CVUSA", out_dir / "CVACT"
    sizes = REAL_FILE_SIZES if real_sizes else dict.fromkeys(REAL_FILE_SIZES, (tuple(sat_size), tuple(grd_size)))
    make_cvusa_folders(cvusa_root, raw=real_sizes)
    if cvact:
        make_cvact_folders(cvact_root)
    region_height_m = max(240.0, np.sqrt((num_train + num_val) * LOCATION_AREA_M2))
    widths_m = [max(120.0, count * LOCATION_AREA_M2 / region_height_m) for count in (num_train, num_val)]
    shape, (train_box, val_box) = regions_in_a_row(widths_m, region_height_m)
    rng = np.random.default_rng(seed)
    world = paint_world(rng, shape)
    positions = np.concatenate([
        sample_locations(world, train_box, num_train, rng),
        sample_locations(world, val_box, num_val, rng),
    ])
    ids = cvusa_ids(len(positions))
    pano_ids = cvact_pano_ids(rng, len(positions))
    for index in tqdm(range(len(positions)), desc="synthetic pairs", unit="pair", disable=not progress):
        view_rng = np.random.default_rng([seed, index])
        sat, grd = render_pair(world, positions[index], sizes["CVUSA"], view_rng)
        write_cvusa_pair(cvusa_root, ids[index], sat, grd, raw=real_sizes)
        if cvact:
            if sizes["CVACT"] != sizes["CVUSA"]:
                sat, grd = render_pair(world, positions[index], sizes["CVACT"], np.random.default_rng([seed, index, 1]))
            write_cvact_pair(cvact_root, pano_ids[index], sat, grd)
    write_cvusa_splits(cvusa_root, ids, num_train)
    if cvact:
        write_act_data(cvact_root, pano_ids, world.utm(positions), num_train, seed)
    summary = {
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
        "cvusa_root": str(cvusa_root),
        **({"cvact_root": str(cvact_root)} if cvact else {}),
        "sat_size": sizes["CVUSA"][0],
        "grd_size": sizes["CVUSA"][1],
        "map_metres_per_cell": CELL_M,
        "sat_metres_per_pixel": SAT_FOOTPRINT_M / sizes["CVUSA"][0][1],
        "world_size_m": (world.kind.shape[0] * CELL_M, world.kind.shape[1] * CELL_M),
    }
    if orthophoto:
        folder = out_dir / "orthophoto"
        metres_per_pixel = SAT_FOOTPRINT_M / sizes["CVUSA"][0][1]
        summary["orthophoto"] = write_orthophoto(world, folder / "map.tif", metres_per_pixel,
                                                 np.random.default_rng([seed, 2]))
        suffix = ".jpg" if real_sizes else ".png"
        splits = ["train"] * num_train + ["val"] * num_val
        write_panorama_positions(folder / "panoramas.csv", [f"{i}{suffix}" for i in ids], world.utm(positions), splits)
    if vigor_per_city:
        summary["vigor"] = generate_vigor(out_dir / "VIGOR", vigor_per_city, seed, *sizes["VIGOR"], progress)
    if real_sizes:
        summary["file_sizes"] = sizes
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary


def render_pair(world: World, position: np.ndarray, sizes: Sizes, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """The aerial view as JPEG bytes and the panorama's pixels at one location."""
    sat = encode(render_aerial(world, position, sizes[0], rng), ".jpg")
    return sat, render_panorama(world, position, sizes[1], rng)
