"""The check before training (`utils.image_check`): images per second at CVUSA's own file sizes.

It decodes every image of a synthetic CVUSA written at the real sizes and formats (aerial JPEG 750x750,
panorama JPEG 1232x224; `dataset.synthetic`'s `real_sizes`), in as many threads as train.py uses
(`default_num_workers`), with no record of earlier checks ("first check"), then again with the record that
check left ("next check": only the files' sizes and modification times are read). The files are read from
the page cache (they were just written, or read by a warm-up pass), not from a cold disk. The figure is
scaled to CVUSA's 44,416 pairs (88,832 images) and set beside the time of one training epoch from
`--train_pairs_per_s` (this machine's figure from bench_train.py).

    python benchmarks/bench_image_check.py --root /tmp/bench_world_real --num_pairs 1000

The last line printed is one JSON object with the figures.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_data import world_root  # noqa: E402
from benchmarks.machine import load_average, print_machine  # noqa: E402
from dataset.cvusa import CVUSA  # noqa: E402
from dataset.datamodule import default_num_workers  # noqa: E402
from utils.image_check import find_bad_images, read_record, write_record  # noqa: E402

CVUSA_IMAGES = 2 * (35_532 + 8_884)
CVUSA_TRAIN_PAIRS = 35_532


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="a CVUSA folder, or where to write one (default: temp)")
    parser.add_argument("--num_pairs", type=int, default=1000, help="training pairs to write when generating")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: train.py's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed first checks (the median counts)")
    parser.add_argument("--train_pairs_per_s", type=float, default=0.318,
                        help="training pairs per second of this machine at the paper's sizes (bench_train.py)")
    args = parser.parse_args()

    machine = print_machine()
    root, keep_alive = world_root(args.root, args.num_pairs, (256, 256), (128, 512), real_sizes=True)
    paths = [path for split in ("train", "val") for dataset in [CVUSA(root, split)]
             for path in dataset.sat_paths + dataset.grd_paths]
    workers = default_num_workers() if args.workers is None else args.workers
    print(f"{len(paths)} images in {root}, {workers} threads", flush=True)
    find_bad_images(paths, workers)  # warm-up: every file in the page cache

    firsts = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        bad, good = find_bad_images(paths, workers)
        firsts.append(time.perf_counter() - start)
        print(f"first check: {firsts[-1]:.2f} s, {len(bad)} unusable", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "record.json"
        write_record(record, good)
        start = time.perf_counter()
        again, decoded = find_bad_images(paths, workers, read_record(record))
        next_seconds = time.perf_counter() - start
    if bad or again or decoded:
        raise SystemExit(f"expected a whole world: {len(bad)} bad, then {len(again)} bad, {len(decoded)} decoded")

    first = sorted(firsts)[len(firsts) // 2]
    per_second = len(paths) / first
    epoch_s = CVUSA_TRAIN_PAIRS / args.train_pairs_per_s
    result = {
        "images": len(paths),
        "threads": workers,
        "first_check_s": round(first, 2),
        "first_check_images_per_s": round(per_second, 1),
        "next_check_s": round(next_seconds, 3),
        "cvusa_first_check_s": round(CVUSA_IMAGES / per_second, 1),
        "cvusa_next_check_s": round(CVUSA_IMAGES / len(paths) * next_seconds, 2),
        "cvusa_epoch_s_at_train_pairs_per_s": round(epoch_s),
        "first_check_share_of_epoch": round(CVUSA_IMAGES / per_second / epoch_s, 5),
        "spread_pct": round(100 * (max(firsts) - min(firsts)) / first, 1),
    }
    result |= machine | {"load_average_1min_end": load_average()}
    print(json.dumps(result))
    if keep_alive is not None:
        keep_alive.cleanup()


if __name__ == "__main__":
    main()
