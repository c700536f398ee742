"""Train-step and eval-step pairs per second of CrossViewNet on the CPU: this repository against the authors' way.

The authors' way (the baseline): float32 batches that their loader already scaled to [-1, 1] on the CPU,
a float32 step. This repository: uint8 batches scaled by `utils.images.to_model_range` inside the step
(what `CrossViewModule.on_after_batch_transfer` does after the transfer), in float32 (`--precision 32`,
the default) or under `torch.autocast("cpu", dtype=torch.bfloat16)`, which is how Lightning's
`bf16-mixed` wraps the training step (the backward pass and Adam's step run outside it).

A train step is forward + soft-margin triplet loss + backward + Adam step on batches already in memory
(random images, the same for every variant); an eval step is the forward pass under inference mode.
Each variant runs `--warmup` steps, then `--repeats` timed steps interleaved round by round with the
other variants' (the order rotates every round, so a load spike on a shared machine hits all of them);
the median counts. A plain N x N matrix product in float32 and bfloat16 shows what the CPU itself does
with bfloat16.

`--levers` adds the float32 step with `--channels_last` (network and batches in channels-last memory format,
as `CrossViewModule` does) and `--levers compile` also with `torch.compile` of the network (its first
step, which compiles, counts as the warm-up and is reported apart).

    python benchmarks/bench_train.py                   # tiny (64x64 / 32x128, batch 8) and paper sizes (batch 2)
    python benchmarks/bench_train.py --sizes tiny --tiny_batch 32 --repeats 5
    python benchmarks/bench_train.py --sizes --matmul_size 2048    # the plain matrix product only
    python benchmarks/bench_train.py --sizes tiny --levers channels_last compile

The last line printed is one JSON object with the figures; the headline keys are those of the paper's
sizes when they were measured.
"""

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import load_average, print_machine  # noqa: E402
from model.loss import soft_margin_triplet_loss  # noqa: E402
from model.network import CrossViewNet  # noqa: E402
from utils.images import to_model_range  # noqa: E402

SIZES = {"tiny": ((64, 64), (32, 128)), "paper": ((256, 256), (128, 512))}
TRAIN_VARIANTS = ("baseline_fp32", "fp32", "bf16")
LEVERS = ("channels_last", "compile")


def train_step(
    net: CrossViewNet, optimizer: torch.optim.Optimizer, sat: torch.Tensor, grd: torch.Tensor, bf16: bool,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> None:
    """One optimisation step; uint8 batches are scaled here first, as this repository does after the transfer."""
    if sat.dtype == torch.uint8:
        sat, grd = to_model_range(sat), to_model_range(grd)
        sat, grd = sat.contiguous(memory_format=memory_format), grd.contiguous(memory_format=memory_format)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        sat_desc, grd_desc = net(sat, grd)
        loss = soft_margin_triplet_loss(sat_desc, grd_desc)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@torch.inference_mode()
def eval_step(net: CrossViewNet, sat: torch.Tensor, grd: torch.Tensor, bf16: bool) -> None:
    """Descriptors of one batch, as validation computes them (Lightning validates under inference mode)."""
    if sat.dtype == torch.uint8:
        sat, grd = to_model_range(sat), to_model_range(grd)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        net(sat, grd)


def timed_rounds(label: str, steps: dict[str, Callable[[], None]], warmup: int, repeats: int) -> dict[str, list[tuple]]:
    """(wall, CPU) seconds of `repeats` calls of every step, interleaved; the order rotates every round."""
    for name, step in steps.items():
        for _ in range(warmup):
            wall = time.perf_counter()
            step()
            print(f"  {label} {name} warm-up: {time.perf_counter() - wall:.1f} s", flush=True)
    names = list(steps)
    times: dict[str, list[tuple]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            steps[name]()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            print(f"  {label} {name} round {round_index + 1}: {times[name][-1][0]:.1f} s", flush=True)
    return times


def summarise(times: dict[str, list[tuple]], batch: int) -> dict[str, dict[str, float]]:
    """Pairs per second from the median wall time, the median CPU seconds, and the spread of the wall times."""
    summary: dict[str, dict[str, float]] = {"pairs_per_s": {}, "cpu_s_per_step": {}, "spread_pct": {}}
    for name, samples in times.items():
        walls = [wall for wall, _ in samples]
        median_wall = statistics.median(walls)
        summary["pairs_per_s"][name] = round(batch / median_wall, 4)
        summary["cpu_s_per_step"][name] = round(statistics.median(cpu for _, cpu in samples), 3)
        summary["spread_pct"][name] = round(100 * (max(walls) - min(walls)) / median_wall, 1)
    return summary


def lever_steps(net: CrossViewNet, sat: torch.Tensor, grd: torch.Tensor, levers: list[str]) -> dict[str, Callable]:
    """Float32 train steps with each lever: channels-last memory format, then also torch.compile."""
    steps = {}
    for lever in levers:
        lever_net = copy.deepcopy(net).to(memory_format=torch.channels_last)
        if lever == "compile":
            lever_net.compile()
        optimizer = torch.optim.Adam(lever_net.parameters(), lr=1e-4, betas=(0.5, 0.999))
        name = "fp32_channels_last" + ("_compiled" if lever == "compile" else "")
        steps[name] = partial(train_step, lever_net, optimizer, sat, grd, False, torch.channels_last)
    return steps


def ratio(figures: dict[str, float], numerator: str, denominator: str) -> float | None:
    if numerator not in figures or denominator not in figures:
        return None
    return round(figures[numerator] / figures[denominator], 3)


def measure_size(name: str, batch: int, warmup: int, repeats: int, seed: int,
                 levers: list[str] | None = None, bf16: bool = True) -> dict[str, object]:
    """Train and eval steps of every variant at one pair of image sizes, each variant on its own copy of the net."""
    sat_size, grd_size = SIZES[name]
    torch.manual_seed(seed)
    net = CrossViewNet(sat_size, grd_size).train()
    generator = torch.Generator().manual_seed(seed)
    sat_uint8 = torch.randint(0, 256, (batch, 3, *sat_size), dtype=torch.uint8, generator=generator)
    grd_uint8 = torch.randint(0, 256, (batch, 3, *grd_size), dtype=torch.uint8, generator=generator)
    sat_float, grd_float = to_model_range(sat_uint8), to_model_range(grd_uint8)  # the authors' loader's output

    train_steps = {}
    for variant in TRAIN_VARIANTS if bf16 else TRAIN_VARIANTS[:2]:
        variant_net = copy.deepcopy(net)
        optimizer = torch.optim.Adam(variant_net.parameters(), lr=1e-4, betas=(0.5, 0.999))
        inputs = (sat_float, grd_float) if variant.startswith("baseline") else (sat_uint8, grd_uint8)
        train_steps[variant] = partial(train_step, variant_net, optimizer, *inputs, variant.endswith("bf16"))
    train_steps |= lever_steps(net, sat_uint8, grd_uint8, levers or [])
    eval_net = copy.deepcopy(net).eval()
    eval_steps = {
        "baseline_fp32": partial(eval_step, eval_net, sat_float, grd_float, False),
        "fp32": partial(eval_step, eval_net, sat_uint8, grd_uint8, False),
    }
    if bf16:
        eval_steps["bf16"] = partial(eval_step, eval_net, sat_uint8, grd_uint8, True)

    print(f"{name}: aerial {sat_size}, ground {grd_size}, batch {batch}: train steps ...", flush=True)
    compile_seconds = None
    if "compile" in (levers or []):
        start = time.perf_counter()
        train_steps["fp32_channels_last_compiled"]()
        compile_seconds = round(time.perf_counter() - start, 1)
        print(f"  {name} first compiled step (compiles): {compile_seconds} s", flush=True)
    train = summarise(timed_rounds(f"{name} train", train_steps, warmup, repeats), batch)
    print(f"{name} train: {train}", flush=True)
    evaluation = summarise(timed_rounds(f"{name} eval", eval_steps, warmup, repeats), batch)
    print(f"{name} eval: {evaluation}", flush=True)
    speed, eval_speed = train["pairs_per_s"], evaluation["pairs_per_s"]
    return {
        "sat_size": list(sat_size),
        "grd_size": list(grd_size),
        "batch": batch,
        "pairs_per_s_fp32": speed["fp32"],
        "pairs_per_s_bf16": speed.get("bf16"),
        "baseline_pairs_per_s": speed["baseline_fp32"],
        "bf16_vs_fp32": ratio(speed, "bf16", "fp32"),
        "vs_baseline": ratio(speed, "fp32", "baseline_fp32"),
        "vs_baseline_bf16": ratio(speed, "bf16", "baseline_fp32"),
        "cpu_time_bf16_vs_fp32": ratio(train["cpu_s_per_step"], "fp32", "bf16"),
        "eval_pairs_per_s_fp32": eval_speed["fp32"],
        "eval_pairs_per_s_bf16": eval_speed.get("bf16"),
        "eval_baseline_pairs_per_s": eval_speed["baseline_fp32"],
        "eval_bf16_vs_fp32": ratio(eval_speed, "bf16", "fp32"),
        "eval_vs_baseline": ratio(eval_speed, "fp32", "baseline_fp32"),
        "train_pairs_per_s": speed,
        **{f"{lever}_vs_fp32": ratio(speed, lever, "fp32") for lever in speed if lever.startswith("fp32_")},
        "compile_first_step_s": compile_seconds,
        "train_spread_pct": train["spread_pct"],
        "eval_spread_pct": evaluation["spread_pct"],
    }


def measure_matmul(size: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of one size x size matrix product in float32 and in bfloat16 (median of `repeats`)."""
    figures = {"size": size}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        torch.mm(a[:256, :256], b[:256, :256])  # start the thread pool and pick the kernel
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            walls.append(time.perf_counter() - start)
        figures[f"gflops_{label}"] = round(2 * size**3 / statistics.median(walls) / 1e9, 3)
        print(f"matmul {size}x{size} {label}: {figures[f'gflops_{label}']} GFLOP/s", flush=True)
    figures["bf16_vs_fp32"] = round(figures["gflops_bf16"] / figures["gflops_fp32"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", nargs="*", choices=list(SIZES), default=list(SIZES), help="image sizes to run (none: matmul only)"
    )
    parser.add_argument("--tiny_batch", type=int, default=8, help="pairs per batch at 64x64 / 32x128")
    parser.add_argument("--paper_batch", type=int, default=2, help="pairs per batch at 256x256 / 128x512")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant (the median counts)")
    parser.add_argument("--matmul_size", type=int, default=1024, help="side of the plain matrix product (0 skips it)")
    parser.add_argument("--matmul_repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levers", nargs="*", choices=LEVERS, default=[],
                        help="also time the float32 train step with these: channels_last; compile (implies it)")
    parser.add_argument("--no_bf16", action="store_true",
                        help="leave bf16 out (where the CPU lacks bf16 instructions, a paper-size step takes minutes)")
    args = parser.parse_args()
    if min(args.tiny_batch, args.paper_batch) < 2:
        parser.error("batches need at least 2 pairs: the loss needs an in-batch negative")
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    machine = print_machine()
    figures: dict[str, object] = {}
    if args.matmul_size > 0:
        figures["matmul"] = measure_matmul(args.matmul_size, args.matmul_repeats)
    batches = {"tiny": args.tiny_batch, "paper": args.paper_batch}
    for name in args.sizes:
        figures[name] = measure_size(name, batches[name], args.warmup, args.repeats, args.seed, args.levers,
                                     not args.no_bf16)

    if not args.sizes:
        print(json.dumps(figures | machine | {"load_average_1min_end": load_average()}))
        return
    headline = "paper" if "paper" in figures else args.sizes[0]
    keys = (
        "pairs_per_s_fp32",
        "pairs_per_s_bf16",
        "bf16_vs_fp32",
        "vs_baseline",
        "vs_baseline_bf16",
        "batch",
        "eval_pairs_per_s_fp32",
        "eval_pairs_per_s_bf16",
        "eval_bf16_vs_fp32",
    )
    result = {key: figures[headline][key] for key in keys} | {"headline_size": headline}
    result |= figures | machine | {"load_average_1min_end": load_average(), "repeats": args.repeats}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
