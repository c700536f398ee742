"""Recall of this project's model and its variants on the synthetic world, at the demo's settings, for the card.

    python benchmarks/card_recall.py --world /tmp/card_world --out /tmp/card_recall.json --minutes 11

Each row of `bench_cost.py`'s that this project builds is trained from scratch as `demo.sh` trains the paper's
model (the synthetic CVUSA, 6,000 training and 500 held-out pairs, `--lr 1e-3`, batch 32, the decoded-image
cache, a time box of `--minutes`), then tested on the 500 held-out pairs; the images are 32x32 / 16x64 where the
CPU has no bf16 instructions and 64x64 / 32x128 where it has, as in the demo. `bench_cost.py --recall FILE`
puts the figures beside the cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_cost import ROWS  # noqa: E402
from benchmarks.machine import print_machine  # noqa: E402
from engine.build import cpu_has_fast_bf16  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]


def variant_flags(row_name: str) -> list[str]:
    config = next(row.config for row in ROWS if row.name == row_name)
    return ["--backbone", config.backbone, *([] if config.use_fc else ["--no_fc"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True, help="the synthetic world (written when absent)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=11.0, help="each variant's time box (the demo's: 11)")
    parser.add_argument("--pairs", type=int, default=6000)
    args = parser.parse_args()
    machine = print_machine()
    size = 64 if cpu_has_fast_bf16() else 32
    sizes = ["--sat_size_h", str(size), "--sat_size_w", str(size), "--grd_size_h", str(size // 2),
             "--grd_size_w", str(size * 2)]
    world = args.world / f"world_{size}_{args.pairs}"
    if not (world / "CVUSA" / "splits" / "val-19zl.csv").is_file():
        subprocess.run([sys.executable, "-m", "dataset.synthetic", "--out", str(world), "--num_train", str(args.pairs),
                        "--num_val", "500", "--seed", "0", "--sat_size", str(size), str(size), "--grd_size",
                        str(size // 2), str(size * 2), "--vigor_per_city", "0"], cwd=REPOSITORY, check=True)
    runs = args.world / time.strftime("runs_%Y%m%d-%H%M%S")
    data = ["--CVUSA", "--data_root_cvusa", str(world / "CVUSA"), "--gpu", "-1", "--cache_dir",
            str(args.world / "cache"), "--results_dir", str(runs)]
    recall = {}
    for row in (row for row in ROWS if row.config is not None):
        name = "".join(ch if ch.isalnum() else "_" for ch in row.name).strip("_")
        subprocess.run([sys.executable, "train.py", *data, *sizes, *variant_flags(row.name), "--no_pretrained",
                        "--lr", "1e-3", "--precision", "auto", "--n_epochs", "100", "--max_time", str(args.minutes),
                        "--batch_size", "32", "--name", f"train_{name}"], cwd=REPOSITORY, check=True)
        subprocess.run([sys.executable, "test.py", *data, "--checkpoint",
                        str(runs / f"train_{name}" / "best.ckpt"), "--name", f"test_{name}"],
                       cwd=REPOSITORY, check=True)
        results = json.loads((runs / f"test_{name}" / "results.json").read_text())
        recall[row.name] = {"p2s": results["p2s"], "num": results["num"]}
        print(f"{row.name}: {results['p2s']}", flush=True)
    settings = {"size": size, "pairs": args.pairs, "minutes": args.minutes, "machine": machine}
    args.out.write_text(json.dumps({"settings": settings, "recall": recall}, indent=2) + "\n")


if __name__ == "__main__":
    main()
