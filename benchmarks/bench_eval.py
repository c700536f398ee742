"""Time and memory of `utils.recall.recall_at_k` against one chunked N x N matrix product.

`recall_at_k` computes one N x N product per direction, so that every similarity of a query comes from its
own row of one product (ties are then exact): two products are its floor, and a time ratio of 2 means the
counting costs nothing on top of them. Peak RSS is compared with the N x N float32 matrix that the
full-matrix approach holds (several times over in the authors' code).

    python benchmarks/bench_eval.py --n 92800 --dim 2048

The last line printed is one JSON object with the figures.
"""

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import load_average, print_machine  # noqa: E402
from utils.recall import DEFAULT_CHUNK_SIZE, recall_at_k, recall_within_distance  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def correlated_descriptors(n: int, dim: int, noise: float, seed: int, chunk_size: int) -> tuple[torch.Tensor, ...]:
    """L2-normalised aerial descriptors and ground ones = normalise(aerial + noise), built in place.

    `noise` is the norm of the added Gaussian noise relative to the unit aerial descriptor; chunks
    keep the temporaries small, so the process holds little more than the two (N, D) matrices.
    """
    generator = torch.Generator().manual_seed(seed)
    sat = torch.randn(n, dim, generator=generator)
    sat /= sat.norm(dim=1, keepdim=True)
    grd = torch.empty_like(sat)
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        torch.randn(grd[rows].shape, generator=generator, out=grd[rows])
        grd[rows].mul_(noise / dim**0.5).add_(sat[rows])
        grd[rows] /= grd[rows].norm(dim=1, keepdim=True)
    return sat, grd


def timed(function: Callable[[], object]) -> tuple[object, float, float]:
    """Result, wall seconds and CPU seconds of all threads; CPU time is steadier on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def chunked_matrix_product(sat: torch.Tensor, grd: torch.Tensor, chunk_size: int) -> None:
    """sat @ grd.T computed chunk by chunk into one reused buffer, results discarded."""
    n = sat.shape[0]
    chunk_size = min(chunk_size, n)
    block = torch.empty(chunk_size, n, dtype=sat.dtype, device=sat.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        torch.mm(sat[start:stop], grd.T, out=block[: stop - start])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="number of aerial/ground pairs")
    parser.add_argument("--dim", type=int, default=2048, help="descriptor length")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK_SIZE, help="query rows per matrix product")
    parser.add_argument("--noise", type=float, default=10.0, help="noise norm relative to the descriptor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--within_radius",
        type=float,
        default=None,
        help="also time recall_within_distance with this radius, positions about 10 m apart on average",
    )
    parser.add_argument("--repeat", type=int, default=1, help="alternating measurements; the fastest counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print_machine()
    load_at_start = load_average()
    sat, grd = correlated_descriptors(args.n, args.dim, args.noise, args.seed, args.chunk)
    data_rss_mb = peak_rss_mb()
    torch.mm(sat[:256], grd[:256].T)  # warm up the BLAS threads

    # Alternate the two measurements and keep the fastest of each: other load only ever adds time.
    gemm_runs, recall_runs = [], []
    for _ in range(args.repeat):
        gemm_runs.append(timed(partial(chunked_matrix_product, sat, grd, args.chunk)))
        print(f"chunked matrix product: {gemm_runs[-1][1]:.2f} s ({gemm_runs[-1][2]:.2f} s CPU)", flush=True)
        recall_runs.append(timed(partial(recall_at_k, sat, grd, chunk_size=args.chunk)))
        print(f"recall_at_k: {recall_runs[-1][1]:.2f} s ({recall_runs[-1][2]:.2f} s CPU)", flush=True)
    recall = recall_runs[0][0]
    print(f"recall: {recall}", flush=True)
    gemm_seconds = min(run[1] for run in gemm_runs)
    gemm_cpu_seconds = min(run[2] for run in gemm_runs)
    seconds = min(run[1] for run in recall_runs)
    cpu_seconds = min(run[2] for run in recall_runs)

    figures = {}
    if args.within_radius is not None:
        side = 10.0 * args.n**0.5  # one image per 100 square metres, as on densely sampled streets
        utm = torch.rand(args.n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed)) * side
        within, within_seconds, within_cpu_seconds = timed(
            partial(recall_within_distance, sat, grd, utm, radius=args.within_radius, chunk_size=args.chunk)
        )
        print(f"recall_within_distance: {within_seconds:.2f} s ({within_cpu_seconds:.2f} s CPU)  {within}", flush=True)
        figures = {
            "within_seconds": round(within_seconds, 3),
            "within_cpu_time_ratio": round(within_cpu_seconds / gemm_cpu_seconds, 3),
        }

    print(
        json.dumps(
            {
                "n": args.n,
                "dim": args.dim,
                "chunk": args.chunk,
                "threads": torch.get_num_threads(),
                "repeat": args.repeat,
                "seconds": round(seconds, 3),
                "gemm_seconds": round(gemm_seconds, 3),
                "time_ratio": round(seconds / gemm_seconds, 3),
                "cpu_seconds": round(cpu_seconds, 3),
                "gemm_cpu_seconds": round(gemm_cpu_seconds, 3),
                "cpu_time_ratio": round(cpu_seconds / gemm_cpu_seconds, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "data_rss_mb": round(data_rss_mb, 1),
                "full_matrix_mb": round(args.n * args.n * 4 / 2**20, 1),
                "p2s_r@1": round(recall["p2s"]["r@1"], 3),
                "torch": torch.__version__,
                "load_average": [load_at_start, load_average()],
            }
            | figures
        )
    )


if __name__ == "__main__":
    main()
