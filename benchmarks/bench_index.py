"""The gallery index at 100,000 and 1,000,000 tiles: build time, bytes per tile, memory while querying, queries
per second at batch 1 and 64, and recall@1 / @10 relative to exact search, for today's brute force (before this
index: float32 descriptors in memory, one query at a time, a full sort), faiss's exact flat index, and IVF-PQ with
its shortlist re-ranked against the memory-mapped float16 descriptors.

The descriptors are this model's: the tiles of an index `localize.py` built from the synthetic world's
orthophoto (`--index`), and as queries the validation panoramas of that world (`--truth`, their folder
`--panorama_dir`). A city has more tiles than the synthetic world, so the gallery is filled up to each size
with distractors drawn from a Gaussian with the real tiles' mean and covariance (their top 256 principal
components, and each value's remaining variance), L2-normalised: descriptors that look, to second order,
like more tiles of the same kind of place. How hard they are is printed: the share of queries whose best
distractor beats their best real tile.

    python benchmarks/bench_index.py --checkpoint RUN/best.ckpt --index WORLD_INDEX \
        --truth WORLD/orthophoto/panoramas.csv --panorama_dir WORLD/CVUSA/grd --work /tmp/bench_index \
        --sizes 100000 1000000 --out index.json

Each search is measured in its own process (memory is that process's anonymous resident memory after loading
the index and answering every query, less its size before loading). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import load_average, print_machine  # noqa: E402
from utils.descriptor_index import DescriptorWriter, IvfPqParams, Searcher, build_ivfpq  # noqa: E402

TOP_K = 10
PCA_COMPONENTS = 256


def embed_queries(checkpoint: str, truth_csv: str, panorama_dir: str, split: str) -> np.ndarray:
    """The ground descriptors of the panoramas of `split` listed in the truth CSV."""
    import torch

    from engine.config import config_of, fill_from_checkpoint, load_checkpoint_weights
    from engine.options import parse_options
    from localize import TorchBranches, build_parser
    from model.network import CrossViewNet
    from utils.checkpoint import read_checkpoint
    from utils.images import read_rgb, to_chw_tensor

    names = [line.split(",")[0] for line in Path(truth_csv).read_text().splitlines()[1:]
             if line.rstrip().split(",")[-1] == split]
    opt, given = parse_options(build_parser(), ["--checkpoint", checkpoint, "--gpu", "-1"])
    ckpt = read_checkpoint(checkpoint)
    opt, stated = fill_from_checkpoint(opt, given, ckpt, checkpoint)
    net = CrossViewNet.from_config(config_of(opt))
    load_checkpoint_weights(net, ckpt, checkpoint, opt, given, stated)
    branches = TorchBranches(net, torch.device("cpu"))
    images = [to_chw_tensor(read_rgb(os.path.join(panorama_dir, name), branches.grd_size)) for name in names]
    return np.concatenate([branches.embed_grd(torch.stack(images[s: s + 64])) for s in range(0, len(images), 64)])


def distractor_model(real: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Mean, top principal directions with their standard deviations, and each value's remaining deviation."""
    rng = np.random.default_rng(seed)
    sample = real[rng.choice(len(real), min(len(real), 20_000), replace=False)].astype(np.float64)
    mean = sample.mean(0)
    _, singular, directions = np.linalg.svd(sample - mean, full_matrices=False)
    k = min(PCA_COMPONENTS, len(singular))
    spread = singular[:k] / np.sqrt(len(sample) - 1)
    residual = np.maximum(sample.var(0) - (directions[:k] ** 2 * spread[:, None] ** 2).sum(0), 0)
    return {"mean": mean, "directions": directions[:k], "spread": spread, "residual": np.sqrt(residual)}


def draw_distractors(model: dict[str, np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.standard_normal((count, len(model["spread"]))) * model["spread"]
    out = model["mean"] + z @ model["directions"] + rng.standard_normal((count, len(model["mean"]))) * model["residual"]
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def fill_gallery(folder: Path, real: np.ndarray, size: int, seed: int) -> dict:
    """folder/descriptors.npy: the real tiles, then distractors up to `size`; kept in float32 too below 200k rows,
    for the float16 comparison."""
    if (folder / "descriptors.npy").is_file():
        return {"seconds": None}
    start = time.perf_counter()
    model = distractor_model(real, seed)
    rng = np.random.default_rng(seed + size)
    writer = DescriptorWriter(folder, size, {"bench": size, "seed": seed})
    writer.append(real.astype(np.float32))
    keep32 = size <= 200_000
    full32 = [real.astype(np.float32)] if keep32 else None
    while writer.done < size:
        part = draw_distractors(model, min(65_536, size - writer.done), rng)
        writer.append(part)
        if keep32:
            full32.append(part)
    writer.finish()
    if keep32:
        np.save(folder / "descriptors32.npy", np.concatenate(full32))
    return {"seconds": round(time.perf_counter() - start, 1)}


def anon_rss_mb() -> float:
    """This process's anonymous resident memory (its own allocations, not mapped files' pages), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(kind: str, folder: Path, queries_path: Path, single: int) -> dict:
    """In this process: load the search, answer `single` queries one at a time and every query in batches of 64
    (brute force: the first 64)."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    queries = np.load(queries_path)
    before = anon_rss_mb()
    start = time.perf_counter()
    if kind == "brute":  # before this index: float32 descriptors in memory, one query at a time, a full sort
        descriptors = np.load(folder / "descriptors.npy").astype(np.float32)

        def search(batch: np.ndarray) -> np.ndarray:
            rows = []
            for query in batch:
                similarities = descriptors @ query
                rows.append(np.argsort(-similarities, kind="stable")[:TOP_K])
            return np.array(rows)
    else:
        params = None
        if kind == "ivfpq":
            manifest = json.loads((folder / "ivfpq.json").read_text())
            params = IvfPqParams(**manifest)
        searcher = Searcher(folder, kind, params)

        def search(batch: np.ndarray) -> np.ndarray:
            return searcher.search(batch, TOP_K)[1]
    load_seconds = time.perf_counter() - start
    search(queries[:1])  # warm: the first query pays one-off costs
    start = time.perf_counter()
    for query in queries[:single]:
        search(query[None])
    per_single = (time.perf_counter() - start) / single
    answered = queries[:64] if kind == "brute" else queries  # brute force: one batch, it takes seconds a query
    start = time.perf_counter()
    rows = np.concatenate([search(answered[s: s + 64]) for s in range(0, len(answered), 64)])
    per_batched = (time.perf_counter() - start) / len(answered)
    return {"kind": kind, "load_s": round(load_seconds, 2), "qps_batch1": round(1 / per_single, 2),
            "qps_batch64": round(1 / per_batched, 2), "memory_mb": round(anon_rss_mb() - before, 1),
            "rows": rows.tolist()}


def in_subprocess(kind: str, folder: Path, queries_path: Path, single: int) -> dict:
    command = [sys.executable, __file__, "--measure", kind, "--work", str(folder), "--queries", str(queries_path),
               "--single", str(single)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def recall_against(rows: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Over the queries `rows` answers (the first ones of `exact`'s)."""
    exact = exact[: len(rows)]
    top1 = float(np.mean(rows[:, 0] == exact[:, 0]) * 100)
    top10 = float(np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(rows, exact, strict=True)]) * 100)
    return {"recall@1_vs_exact": round(top1, 2), "recall@10_vs_exact": round(top10, 2)}


def float16_effect(folder: Path, queries: np.ndarray) -> dict:
    """Exact top-1 and top-10 with the float16 store against float32 descriptors, and the largest change in a
    similarity."""
    full = np.load(folder / "descriptors32.npy")
    half = np.load(folder / "descriptors.npy").astype(np.float32)
    s32, s16 = queries @ full.T, queries @ half.T
    top32, top16 = np.argsort(-s32, axis=1)[:, :TOP_K], np.argsort(-s16, axis=1)[:, :TOP_K]
    return {"top1_same": round(float(np.mean(top32[:, 0] == top16[:, 0]) * 100), 2),
            "top10_overlap": round(float(np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(top32, top16,
                                                                                              strict=True)]) * 100), 2),
            "max_similarity_change": float(np.abs(s32 - s16).max())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint")
    parser.add_argument("--index", help="an index folder localize.py built from the world's orthophoto")
    parser.add_argument("--truth", help="the world's orthophoto/panoramas.csv")
    parser.add_argument("--panorama_dir", help="the folder of the panoramas the CSV names")
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work", type=Path, required=True, help="a folder with room for the galleries (4 KB a tile)")
    parser.add_argument("--single", type=int, default=20, help="queries timed one at a time (default: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        result = measure(args.measure, args.work, args.queries, args.single)
        print(json.dumps(result))
        return result

    machine = print_machine()
    args.work.mkdir(parents=True, exist_ok=True)
    queries_path = args.work / "queries.npy"
    if not queries_path.is_file():
        np.save(queries_path, embed_queries(args.checkpoint, args.truth, args.panorama_dir, args.split))
    queries = np.load(queries_path)
    real = np.load(Path(args.index) / "descriptors.npy").astype(np.float32)
    print(f"{len(real):,} real tiles from {args.index}, {len(queries)} queries", flush=True)
    report = {"machine": machine, "real_tiles": len(real), "queries": len(queries), "sizes": {}}
    for size in args.sizes:
        folder = args.work / f"gallery_{size}"
        filled = fill_gallery(folder, real, size, args.seed)
        stored = np.load(folder / "descriptors.npy", mmap_mode="r")
        best_real = (queries @ np.asarray(stored[: len(real)], np.float32).T).max(1)
        best_distractor = np.full(len(queries), -np.inf)
        for start in range(len(real), size, 65_536):
            part = np.asarray(stored[start: start + 65_536], np.float32)
            best_distractor = np.maximum(best_distractor, (queries @ part.T).max(1))
        entry = {"fill_s": filled["seconds"], "dim": int(stored.shape[1]),
                 "queries_whose_best_distractor_beats_their_best_real_tile_pct":
                     round(float(np.mean(best_distractor > best_real) * 100), 1)}
        params = IvfPqParams.for_size(size, stored.shape[1])
        if not (folder / "ivfpq.faiss").is_file():
            start = time.perf_counter()
            build_ivfpq(folder, params)
            entry["ivfpq_build_s"] = round(time.perf_counter() - start, 1)
        (folder / "ivfpq.json").write_text(json.dumps(params.__dict__))
        entry["ivfpq"] = {"factory": params.factory(stored.shape[1]), **params.__dict__}
        results = {}
        for kind in ("exact", "ivfpq", "brute"):
            print(f"size {size:,}: measuring {kind} (load average {load_average()})", flush=True)
            results[kind] = in_subprocess(kind, folder, queries_path, args.single)
        exact_rows = np.array(results["exact"]["rows"])
        for result in results.values():
            result.update(recall_against(np.array(result.pop("rows")), exact_rows))
        results["ivfpq"]["bytes_per_tile_in_memory"] = round((folder / "ivfpq.faiss").stat().st_size / size, 1)
        results["ivfpq"]["bytes_per_tile_on_disk"] = round((folder / "descriptors.npy").stat().st_size / size
                                                           + (folder / "ivfpq.faiss").stat().st_size / size, 1)
        results["exact"]["bytes_per_tile_in_memory"] = 4 * stored.shape[1]
        results["brute"]["bytes_per_tile_in_memory"] = 4 * stored.shape[1]
        entry["searches"] = results
        entry["ivfpq_vs_brute"] = {
            "memory_ratio": round(results["brute"]["memory_mb"] / max(results["ivfpq"]["memory_mb"], 1e-9), 1),
            "qps_ratio_batch1": round(results["ivfpq"]["qps_batch1"] / results["brute"]["qps_batch1"], 1),
            "qps_ratio_batch64": round(results["ivfpq"]["qps_batch64"] / results["brute"]["qps_batch64"], 1)}
        if (folder / "descriptors32.npy").is_file():
            entry["float16_store"] = float16_effect(folder, queries)
        report["sizes"][str(size)] = entry
        print(json.dumps({str(size): entry}, indent=1), flush=True)
    report["load_average_end"] = load_average()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
