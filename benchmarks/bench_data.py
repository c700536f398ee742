"""Training-loader pairs per second: this repository's `CVUSADataModule` against the authors' way of loading.

The authors' way (re-created here as the baseline, not their code): per pair, cv2.imread, BGR -> RGB, a
float32 copy of the pixels, then per sample on the CPU a CHW tensor scaled to [-1, 1] as (x/255 - 0.5)/0.5,
in a DataLoader with one process (num_workers=0) that shuffles. This repository: `CVUSADataModule`'s
train loader as it comes (uint8 CHW tensors, its default worker count, persistent workers, prefetch); its
batches still have to become float in [-1, 1], so `utils.images.to_model_range` runs on every batch inside
the timing (the baseline's batches come out already scaled). "cached" is the same data module with
`cache_dir` (`utils.image_cache`) and its default for that case, no worker processes: the images decoded
once, before the timing (the build time is reported apart), then read from memory-mapped arrays. Also timed:
the cached loader with this repository's worker count.

The data is a synthetic CVUSA written by `dataset.synthetic` at the configured sizes (so neither loader
resizes), or with `--real_sizes` at CVUSA's own file sizes and formats (aerial JPEG 750x750, panorama JPEG
1232x224, in the download's layout), which every loader resizes to the configured sizes as it resizes real
data (the cache once, while it is built); read from the page cache after the warm-up epoch. Loaders run
whole epochs (or `--batches` batches), interleaved round by round with a rotating order; the median epoch
counts. Also timed: the baseline with this repository's worker count, and this repository with one
process. The baseline scales in the main process with torch's threads: on a machine with more runnable
processes than cores, multi-threaded small tensor operations mostly wait for each other, so `--threads 1`
shows the baseline at its best.

    python benchmarks/bench_data.py --root /tmp/bench_world          # writes 480 pairs there once, then reuses them
    python benchmarks/bench_data.py --root /tmp/bench_world --workers 2 --epochs 5
    python benchmarks/bench_data.py --root /tmp/bench_world_real --real_sizes --num_pairs 1000

The last line printed is one JSON object with the figures.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import load_average, print_machine  # noqa: E402
from dataset.cvusa import CVUSA  # noqa: E402
from dataset.datamodule import CVUSADataModule, default_num_workers  # noqa: E402
from dataset.synthetic import generate  # noqa: E402
from utils.images import to_model_range  # noqa: E402


def authors_float_image(path: str, size_hw: tuple[int, int]) -> np.ndarray:
    """The pixels as the authors' dataset held them: RGB, float32, H x W x 3, 0..255."""
    image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    if image.shape[:2] != tuple(size_hw):
        image = cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    return np.array(image, dtype=np.float32)


def authors_to_tensor(image: np.ndarray) -> torch.Tensor:
    """Their per-sample transform: a contiguous CHW float tensor, then (x/255 - 0.5)/0.5, each step a new tensor."""
    tensor = torch.from_numpy(image.transpose(2, 0, 1)).contiguous()
    return tensor.div(255.0).sub(0.5).div(0.5)


class AuthorsWayCVUSA(Dataset):
    """The same pairs as `CVUSA`, each returned as two float tensors already in [-1, 1], built the authors' way."""

    def __init__(self, sat_paths: list[str], grd_paths: list[str], sat_size: tuple, grd_size: tuple) -> None:
        self.sat_paths, self.grd_paths = sat_paths, grd_paths
        self.sat_size, self.grd_size = sat_size, grd_size

    def __len__(self) -> int:
        return len(self.sat_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sat = authors_to_tensor(authors_float_image(self.sat_paths[index], self.sat_size))
        grd = authors_to_tensor(authors_float_image(self.grd_paths[index], self.grd_size))
        return sat, grd


def ours_batches(loader: DataLoader) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """This repository's batches as the model receives them: uint8 scaled to float in [-1, 1]."""
    for batch in loader:
        yield to_model_range(batch["sat"]), to_model_range(batch["grd"])


def run_epoch(batches: Callable[[], Iterable], max_batches: int | None) -> tuple[int, float]:
    """(pairs, seconds) of one pass, from creating the iterator to the last batch in float."""
    pairs, start = 0, time.perf_counter()
    for count, (sat, grd) in enumerate(batches(), start=1):
        if sat.dtype != torch.float32 or grd.dtype != torch.float32:
            raise TypeError(f"a loader gave {sat.dtype} / {grd.dtype}; the model needs float32")
        pairs += len(sat)
        if max_batches is not None and count >= max_batches:
            break
    return pairs, time.perf_counter() - start


def world_root(root: str | None, num_pairs: int, sat_size: tuple, grd_size: tuple,
               real_sizes: bool = False) -> tuple[str, object]:
    """A CVUSA folder to read: `root` (or its CVUSA/) when it holds one, else a synthetic world written there
    (CVUSA alone; at CVUSA's own file sizes with `real_sizes`)."""
    keep_alive = None
    if root is None:
        keep_alive = tempfile.TemporaryDirectory(prefix="bench_data_")
        root = keep_alive.name
    for candidate in (Path(root), Path(root) / "CVUSA"):
        if (candidate / "splits" / "train-19zl.csv").is_file():
            return str(candidate), keep_alive
    if Path(root).exists() and any(Path(root).iterdir()):
        raise SystemExit(f"--root {root} is neither empty nor a CVUSA folder (expected splits/train-19zl.csv)")
    print(f"writing {num_pairs} synthetic pairs to {root} (once) ...", flush=True)
    info = generate(root, num_pairs, max(2, num_pairs // 16), sat_size=sat_size, grd_size=grd_size, progress=False,
                    vigor_per_city=0, real_sizes=real_sizes, cvact=False)
    print(f"written in {info['seconds']} s", flush=True)
    return info["cvusa_root"], keep_alive


def train_loader(root: str, batch: int, workers: int, sat_size: tuple, grd_size: tuple,
                 cache_dir: str | None = None) -> DataLoader:
    datamodule = CVUSADataModule(root, batch_size=batch, num_workers=workers, sat_size=sat_size, grd_size=grd_size,
                                 cache_dir=cache_dir)
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def build_loaders(
    root: str, batch: int, workers: int, sat_size: tuple, grd_size: tuple, cache_dir: str
) -> tuple[dict[str, Callable[[], Iterable]], int, float]:
    """Iterator factories of every loader compared, the number of training pairs they read, and the seconds
    the cache took to build (0 when it was there already).

    "ours" is the data module's train loader with `workers`; "baseline" the authors' way with one process;
    "cached" ours with the cache in `cache_dir` and no workers; with workers > 0 also the baseline at the same
    worker count, ours with one process and cached with `workers`.
    """
    ours = train_loader(root, batch, workers, sat_size, grd_size)
    start = time.perf_counter()
    cached = train_loader(root, batch, 0, sat_size, grd_size, cache_dir)
    cache_seconds = time.perf_counter() - start
    split = CVUSA(root, "train", sat_size, grd_size)
    authors_dataset = AuthorsWayCVUSA(split.sat_paths, split.grd_paths, sat_size, grd_size)
    loaders: dict[str, Callable[[], Iterable]] = {
        "ours": lambda: ours_batches(ours),
        "baseline": lambda: iter(DataLoader(authors_dataset, batch_size=batch, shuffle=True, num_workers=0)),
        "cached": lambda: ours_batches(cached),
    }
    if workers > 0:
        baseline_workers = DataLoader(authors_dataset, batch_size=batch, shuffle=True, num_workers=workers)
        loaders["baseline_equal_workers"] = lambda: iter(baseline_workers)
        ours_one_process = train_loader(root, batch, 0, sat_size, grd_size)
        loaders["ours_zero_workers"] = lambda: ours_batches(ours_one_process)
        cached_workers = train_loader(root, batch, workers, sat_size, grd_size, cache_dir)
        loaders["cached_workers"] = lambda: ours_batches(cached_workers)
    return loaders, len(split), cache_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root", default=None, help="a CVUSA folder, or where to write a synthetic one (default: temp)"
    )
    parser.add_argument("--num_pairs", type=int, default=480, help="training pairs to write when generating")
    parser.add_argument("--real_sizes", action="store_true",
                        help="write the world at CVUSA's own file sizes; the loaders resize to --sat_size/--grd_size")
    parser.add_argument("--sat_size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--grd_size", type=int, nargs=2, default=(128, 512), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="this repository's workers (default: its own)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per loader (the median counts)")
    parser.add_argument("--warmup_epochs", type=int, default=1)
    parser.add_argument("--batches", type=int, default=None, help="stop each epoch after this many batches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cache_dir", default=None, help="the decoded-image cache (default: a fresh temporary one)")
    args = parser.parse_args()
    if args.epochs < 1 or args.warmup_epochs < 0 or args.batch < 1:
        parser.error("--epochs and --batch must be >= 1 and --warmup_epochs >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sat_size, grd_size = tuple(args.sat_size), tuple(args.grd_size)

    machine = print_machine()
    root, keep_alive = world_root(args.root, args.num_pairs, sat_size, grd_size, args.real_sizes)
    first = CVUSA(root, "train")
    file_sizes = [list(cv2.imread(path).shape[:2]) for path in (first.sat_paths[0], first.grd_paths[0])]
    workers = default_num_workers() if args.workers is None else args.workers
    cache_keep_alive = None
    if args.cache_dir is None:
        cache_keep_alive = tempfile.TemporaryDirectory(prefix="bench_data_cache_")
    cache_dir = args.cache_dir or cache_keep_alive.name
    loaders, pairs, cache_seconds = build_loaders(root, args.batch, workers, sat_size, grd_size, cache_dir)
    print(f"cache ready in {cache_seconds:.1f} s", flush=True)
    print(f"{pairs} pairs, batch {args.batch}, our workers {workers}, cv2 threads {cv2.getNumThreads()}", flush=True)

    names = list(loaders)
    for name in names:
        for _ in range(args.warmup_epochs):
            run_epoch(loaders[name], args.batches)
    speeds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.epochs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            epoch_pairs, seconds = run_epoch(loaders[name], args.batches)
            speeds[name].append(epoch_pairs / seconds)
        print(
            f"round {round_index + 1}: " + ", ".join(f"{n} {speeds[n][-1]:.1f}" for n in names) + " pairs/s", flush=True
        )
    median = {name: statistics.median(values) for name, values in speeds.items()}
    spread = {name: round(100 * (max(v) - min(v)) / median[name], 1) for name, v in speeds.items()}
    equal = median.get("baseline_equal_workers", median["baseline"])
    ours_zero_workers = median.get("ours_zero_workers", median["ours"])
    cached_workers = median.get("cached_workers", median["cached"])
    result = {
        "pairs_per_s": round(median["ours"], 2),
        "baseline_pairs_per_s": round(median["baseline"], 2),
        "baseline_equal_workers_pairs_per_s": round(equal, 2),
        "vs_baseline": round(median["ours"] / median["baseline"], 3),
        "vs_baseline_equal_workers": round(median["ours"] / equal, 3),
        "zero_workers_pairs_per_s": round(ours_zero_workers, 2),
        "vs_baseline_zero_workers": round(ours_zero_workers / median["baseline"], 3),
        "cached_pairs_per_s": round(median["cached"], 2),
        "cached_vs_baseline": round(median["cached"] / median["baseline"], 3),
        "cached_workers_pairs_per_s": round(cached_workers, 2),
        "cached_workers_vs_baseline": round(cached_workers / median["baseline"], 3),
        "cache_build_s": round(cache_seconds, 1),
        "workers": workers,
        "batch": args.batch,
        "pairs": pairs,
        "sat_size": list(sat_size),
        "grd_size": list(grd_size),
        "file_sizes": file_sizes,
        "epochs": args.epochs,
        "spread_pct": spread,
    }
    result |= machine | {"load_average_1min_end": load_average(), "cv2_threads": cv2.getNumThreads()}
    print(json.dumps(result))
    for folder in (keep_alive, cache_keep_alive):
        if folder is not None:
            folder.cleanup()


if __name__ == "__main__":
    main()
