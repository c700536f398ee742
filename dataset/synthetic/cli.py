"""`python -m dataset.synthetic`: write the synthetic world and print its summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dataset.synthetic.generate import generate
from dataset.synthetic.plot import plot_pairs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Write a synthetic world in the CVUSA, CVACT and VIGOR layouts.")
    parser.add_argument("--out", required=True, type=Path, help="folder that receives CVUSA/, CVACT/ and VIGOR/")
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sat_size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--grd_size", type=int, nargs=2, default=(128, 512), metavar=("H", "W"))
    parser.add_argument("--vigor_per_city", type=int, default=None,
                        help="VIGOR panoramas per city (default: a quarter of all pairs; 0: no VIGOR)")
    parser.add_argument("--real_sizes", action="store_true",
                        help="write the files at the benchmarks' own sizes and formats (CVUSA 750x750 / 1232x224 "
                             "JPEG, CVACT 1200x1200 / 1664x832, VIGOR 640x640 PNG / 2048x1024 JPEG) in place of "
                             "--sat_size and --grd_size")
    parser.add_argument("--no_cvact", action="store_true", help="write CVUSA (and VIGOR) alone")
    parser.add_argument("--no_orthophoto", action="store_true",
                        help="leave out orthophoto/map.tif (the map as a GeoTIFF) and orthophoto/panoramas.csv")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG", help="also save a few pairs as a PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    summary = generate(args.out, args.num_train, args.num_val, args.seed, tuple(args.sat_size), tuple(args.grd_size),
                       progress=not args.quiet, vigor_per_city=args.vigor_per_city,
                       real_sizes=args.real_sizes, cvact=not args.no_cvact,
                       orthophoto=not args.no_orthophoto)
    if args.plot is not None:
        summary["plot"] = str(plot_pairs(args.out, args.plot))
    print(json.dumps(summary, indent=1))
    return summary
