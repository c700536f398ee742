"""The efficiency card: this paper's model, its variants and the field's models, cost side by side on this machine.

    python benchmarks/bench_cost.py --out /tmp/cost_card.json --figure docs/images/cost_card.png

For every row: parameters (each branch, and the model, a shared branch counted once), multiply-adds per aerial
image and per panorama at the row's input sizes (`benchmarks/cost.py` says what is counted; FLOPs = 2 x MACs),
latency per image at batch 1 and 32 in float32 and, where the CPU has bf16 instructions, bf16, the peak memory
of one batch beyond the weights, and the descriptor's size with the memory of galleries of CVUSA-val, CVACT_test,
VIGOR and a million tiles. This project's rows also get onnxruntime's latency at batch 1 (`export.py --format
onnx`). Each row runs in a process of its own, so that peak memory is that row's. The field's models are built
with random weights for their cost only (`benchmarks/field_models.py`); their R@1 is the published one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cost import gallery_bytes, latency, multiply_adds, parameters, peak_rss_bytes  # noqa: E402
from benchmarks.field_models import FIELD_MODELS  # noqa: E402
from benchmarks.machine import load_average, print_machine  # noqa: E402
from engine.build import cpu_has_fast_bf16  # noqa: E402
from model.network import CrossViewNet  # noqa: E402
from utils.checkpoint import ModelConfig  # noqa: E402

GALLERIES = {"CVUSA-val": 8_884, "CVACT_test": 92_802, "VIGOR": 90_618, "1M tiles": 1_000_000}


@dataclass(frozen=True)
class Row:
    name: str
    source: str
    config: ModelConfig | None = None  # this project's rows
    published: dict[str, float] = field(default_factory=dict)  # R@1 by benchmark
    published_cost: str = ""


OURS = "this project (model/backbone.py)"
ROWS = [
    Row("paper's model, FC (K = 8)", OURS, ModelConfig()),
    Row("paper's model, no FC", OURS, ModelConfig(use_fc=False)),
    Row("ResNet-18 backbone", OURS, ModelConfig(backbone="resnet18")),
    Row("MobileNetV3-L backbone", OURS, ModelConfig(backbone="mobilenet_v3_large")),
    Row("ResNet-34 with its max-pool", OURS, ModelConfig(backbone="resnet34_maxpool")),
    Row("SAFA", "Shi et al., NeurIPS 2019; VIGOR: Zhu et al., CVPR 2021",
        published={"CVUSA": 89.84, "CVACT_val": 81.03, "VIGOR same": 33.93}),
    Row("TransGeo", "Zhu et al., CVPR 2022", published={"CVUSA": 94.08, "CVACT_val": 84.95, "VIGOR same": 61.48},
        published_cost="44.9 M parameters, 11.32 GFLOPs (its paper; there a multiply-add counts as one)"),
    Row("Sample4Geo", "Deuser et al., ICCV 2023",
        published={"CVUSA": 98.68, "CVACT_val": 90.81, "CVACT_test": 71.51, "VIGOR same": 77.86},
        published_cost="90.54 GFLOPs (as CLGT's paper gives it)"),
]


def build(row: Row) -> tuple[nn.Module, tuple[int, int], nn.Module, tuple[int, int], CrossViewNet | None]:
    """(aerial branch, its size, ground branch, its size, the whole network for this project's rows)."""
    if row.config is None:
        return (*FIELD_MODELS[row.name](), None)
    net = CrossViewNet.from_config(row.config).eval()
    return net.branch("sat"), row.config.sat_size, net.branch("grd"), row.config.net_grd_size, net


def measure_row(row: Row, batch: int, warmup: int, repeats: int) -> dict:
    """Everything measured of one row at one batch size, in this process (peak memory is the process's)."""
    torch.manual_seed(0)
    aerial, sat_size, ground, grd_size, net = build(row)
    aerial.eval()
    ground.eval()
    images = {"aerial": torch.rand(batch, 3, *sat_size) * 2 - 1, "ground": torch.rand(batch, 3, *grd_size) * 2 - 1}
    branches = {"aerial": aerial, "ground": ground}
    before = peak_rss_bytes()
    with torch.no_grad():
        descriptor_size = {view: branches[view](images[view]).shape[1] for view in branches}
    result = {"row": row.name, "batch": batch, "peak_memory_bytes": peak_rss_bytes() - before}
    precisions = ["float32"] + (["bfloat16"] if cpu_has_fast_bf16() else [])
    for precision in precisions:
        for view, branch in branches.items():
            def run(branch: nn.Module = branch, view: str = view, bf16: bool = precision == "bfloat16") -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    branch(images[view])

            timed = latency(run, warmup, repeats)
            result[f"{view}_{precision}_ms_per_image"] = timed.median_s * 1000 / batch
            result[f"{view}_{precision}_spread"] = round(timed.spread, 3)
    if batch == 1:
        result["parameters"] = {"aerial": parameters(aerial), "ground": parameters(ground),
                                "model": parameters(aerial, ground)}
        result["macs"] = {"aerial": multiply_adds(aerial, sat_size), "ground": multiply_adds(ground, grd_size)}
        result["sizes"] = {"aerial": list(sat_size), "ground": list(grd_size)}
        result["descriptor_size"] = descriptor_size["aerial"]
        if net is not None:
            result.update(onnx_latency(net, row.config, images, warmup, repeats))
    return result


def onnx_latency(net: CrossViewNet, config: ModelConfig, images: dict[str, torch.Tensor], warmup: int,
                 repeats: int) -> dict:
    """onnxruntime's latency per image at batch 1 for the exported branches, and its largest difference from
    PyTorch's descriptors."""
    from model.onnx_export import export_onnx
    from utils.onnx_runtime import load_branches

    with tempfile.TemporaryDirectory() as folder:
        export_onnx(net, config, folder, "random weights")
        graphs = dict(zip(("aerial", "ground"), load_branches(folder, threads=torch.get_num_threads()), strict=True))
        result = {}
        with torch.no_grad():
            reference = {"aerial": net.embed_sat(images["aerial"]), "ground": net.embed_grd(images["ground"])}
        for view, graph in graphs.items():
            array = images[view].numpy()
            timed = latency(lambda graph=graph, array=array: graph(array), warmup, repeats)
            result[f"{view}_onnxruntime_ms_per_image"] = timed.median_s * 1000
            result[f"{view}_onnxruntime_max_abs_difference"] = float(
                (torch.from_numpy(graph(array)) - reference[view]).abs().max())
        return result


def in_own_process(row: Row, batch: int, warmup: int, repeats: int) -> dict:
    command = [sys.executable, __file__, "--one_row", row.name, "--batch", str(batch), "--warmup", str(warmup),
               "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{row.name} at batch {batch} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def card(rows: list[Row], batches: list[int], repeats: dict[int, int]) -> list[dict]:
    measured = []
    for row in rows:
        entry = {"row": row.name, "source": row.source, "published_r1": row.published,
                 "published_cost": row.published_cost}
        for batch in batches:
            result = in_own_process(row, batch, warmup=1, repeats=repeats[batch])
            entry.setdefault("batches", {})[batch] = result
            print(f"{row.name}, batch {batch}: {json.dumps({k: v for k, v in result.items() if 'ms' in k})}",
                  flush=True)
        first = entry["batches"][batches[0]]
        entry.update({key: first[key] for key in ("parameters", "macs", "sizes", "descriptor_size") if key in first})
        entry["gallery_bytes"] = {name: gallery_bytes(entry["descriptor_size"], count) for name, count in
                                  GALLERIES.items()}
        measured.append(entry)
    return measured


def markdown(measured: list[dict], batches: list[int], recall: dict | None = None) -> str:
    """The card as a Markdown table: cost per pair (an aerial image and a panorama), and with `recall`
    (`card_recall.py`'s) this project's recall on the synthetic world."""
    lines = ["| model | input (aerial; ground) | parameters (M): aerial + ground = model | GMACs per pair "
             "(aerial + ground) | GFLOPs per pair | " + " | ".join(f"ms per pair, batch {b}" for b in batches)
             + f" | onnxruntime ms, batch 1 | peak memory, batch {batches[-1]} (MB) | descriptor | gallery of 1M tiles"
             " | published R@1 (CVUSA / CVACT_val / VIGOR same) |"
             + (" synthetic world R@1 / R@5 |" if recall else ""),
             "| " + " | ".join(["---"] * (10 + len(batches) + bool(recall))) + " |"]
    for entry in measured:
        params, macs = entry["parameters"], entry["macs"]
        shared = params["model"] < params["aerial"] + params["ground"]
        sizes = "; ".join("x".join(map(str, entry["sizes"][view])) for view in ("aerial", "ground"))
        pair_macs = (macs["aerial"] + macs["ground"]) / 1e9
        latencies = [sum(entry["batches"][b][f"{view}_float32_ms_per_image"] for view in ("aerial", "ground"))
                     for b in batches]
        first = entry["batches"][batches[0]]
        onnx = first.get("aerial_onnxruntime_ms_per_image")
        onnx_text = "" if onnx is None else f"{onnx + first['ground_onnxruntime_ms_per_image']:.0f}"
        memory = f"{entry['batches'][batches[-1]]['peak_memory_bytes'] / 2**20:.0f}"
        published = entry["published_r1"]
        r1 = " / ".join(f"{published[k]:.2f}" if k in published else "-" for k in ("CVUSA", "CVACT_val", "VIGOR same"))
        lines.append(
            f"| {entry['row']} | {sizes} | {params['aerial'] / 1e6:.1f} + {params['ground'] / 1e6:.1f} = "
            f"{params['model'] / 1e6:.1f}{' (shared)' if shared else ''} | {macs['aerial'] / 1e9:.2f} + "
            f"{macs['ground'] / 1e9:.2f} | {2 * pair_macs:.1f} | "
            + " | ".join(f"{value:.0f}" for value in latencies)
            + f" | {onnx_text} | {memory} | {entry['descriptor_size']} x float32 | "
            f"{entry['gallery_bytes']['1M tiles'] / 1e9:.1f} GB | {r1} |"
            + (f" {synthetic_recall(recall, entry['row'])} |" if recall else ""))
    return "\n".join(lines)


def synthetic_recall(recall: dict, row: str) -> str:
    found = recall["recall"].get(row)
    return "" if found is None else f"{found['p2s']['r@1']:.1f} / {found['p2s']['r@5']:.1f}"


def figure(measured: list[dict], path: Path) -> None:
    """Cost against published R@1 on CVUSA: GFLOPs per pair and parameters, one point per model; this project's
    rows, whose R@1 on CVUSA is not published here, as vertical lines at their cost."""
    from matplotlib.ticker import FuncFormatter

    from utils.figures import new_figure, save_figure

    fig = new_figure(11, 4.6)
    axes_pair = fig.subplots(1, 2)
    for axes, measure, label in ((axes_pair[0], "gflops", "GFLOPs per pair (aerial image + panorama), log scale"),
                                 (axes_pair[1], "params", "parameters (millions), log scale")):
        xs = []
        for number, entry in enumerate(measured):
            x = 2 * (entry["macs"]["aerial"] + entry["macs"]["ground"]) / 1e9 if measure == "gflops" \
                else entry["parameters"]["model"] / 1e6
            xs.append(x)
            r1 = entry["published_r1"].get("CVUSA")
            colour = f"C{number % 10}"
            if r1 is None:
                axes.axvline(x, color=colour, linestyle=("--", ":", "-.")[number % 3], linewidth=1.4,
                             label=entry["row"])
            else:
                axes.scatter([x], [r1], s=60, color=colour, zorder=3)
                axes.annotate(entry["row"], (x, r1), textcoords="offset points", xytext=(6, -4), fontsize=8)
        axes.set_xscale("log")
        axes.set_xlim(min(xs) / 1.6, max(xs) * 3)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        axes.set_ylim(80, 100)
        axes.set_xlabel(label)
        axes.set_ylabel("published R@1 on CVUSA (%)")
        axes.grid(True, alpha=0.3)
    axes_pair[0].legend(fontsize=7, loc="lower left", title="this project (R@1 not published here)",
                        title_fontsize=7)
    fig.suptitle("Cost against accuracy: the field's models at their published R@1 on CVUSA;\nlines: this paper's "
                 "model and its variants at their cost (with and without FC, the same GFLOPs)", fontsize=10)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the card as JSON here")
    parser.add_argument("--figure", type=Path, help="draw cost against published R@1 here")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, nargs="+", default=[5, 2], help="timed runs per batch size")
    parser.add_argument("--rows", nargs="+", help="only these rows (by name)")
    parser.add_argument("--recall", type=Path, help="card_recall.py's figures, put beside this project's rows")
    parser.add_argument("--from_json", type=Path, help="draw and print a card measured before (--out) again")
    parser.add_argument("--one_row", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    by_name = {row.name: row for row in ROWS}
    if args.one_row:
        print(json.dumps(measure_row(by_name[args.one_row], args.batch, args.warmup, args.repeats[0])))
        return
    recall = json.loads(args.recall.read_text()) if args.recall else None
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        measured, batches = result["rows"], [int(b) for b in result["rows"][0]["batches"]]
        for entry in measured:
            entry["batches"] = {int(b): value for b, value in entry["batches"].items()}
    else:
        result = {"machine": print_machine()}
        rows = [by_name[name] for name in args.rows] if args.rows else ROWS
        batches = args.batches
        measured = card(rows, batches, dict(zip(batches, args.repeats, strict=True)))
        result.update({"bf16_measured": cpu_has_fast_bf16(), "load_average_end": load_average(), "rows": measured})
    print(markdown(measured, batches, recall))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.figure:
        figure(measured, args.figure)
    print(f"load average at the end: {load_average()}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
