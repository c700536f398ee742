"""Evaluate a checkpoint (published or this project's): `python test.py --CVUSA --checkpoint weight/cvusa.pth`."""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np

from model.lightning import CrossViewModule
from train import KNOWN_ERRORS, build_datamodule, build_trainer, module_options
from utils.checkpoint import load_weights
from utils.cli import (
    UsageError,
    add_common_options,
    dataset_name,
    default_run_name,
    make_run_dir,
    parse_devices,
    run_main,
    setup_logging,
    write_json_atomically,
)
from utils.figures import write_test_report

DIRECTIONS = {"p2s": "ground->aerial", "s2p": "aerial->ground"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_options(parser)
    parser.add_argument("--save_descriptors", default=None, metavar="PATH",
                        help="write the sat and grd descriptors (dataset order) and the ids to this .npz")
    parser.add_argument("--match_radius", type=float, default=5.0,
                        help="CVACT test split: a retrieved image within this many metres of the query counts")
    return parser


def recall_table(results: dict[str, dict[str, float]], title: str) -> str:
    """The recall figures laid out like the paper's tables."""
    names = list(next(iter(results.values())))
    lines = [title, f"{'':<16}" + "".join(f"{n.replace('r@', 'R@'):>9}" for n in names)]
    for direction, label in DIRECTIONS.items():
        lines.append(f"{label:<16}" + "".join(f"{results[direction][n]:>9.2f}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    opt = build_parser().parse_args(argv)
    if not opt.checkpoint:
        raise UsageError("test.py needs --checkpoint PATH (published weights or this project's .ckpt)")
    name = dataset_name(opt)
    devices = parse_devices(opt.gpu_ids, opt.cpu_procs)
    split = opt.eval_split if name == "CVACT" else "val"
    radius = opt.match_radius if (name, split) == ("CVACT", "test") else None

    module = CrossViewModule(**module_options(opt), pretrained=False, distance_radius=radius)
    load_weights(module.net, opt.checkpoint)
    datamodule = build_datamodule(opt)
    datamodule.setup("test")

    run_dir = make_run_dir(opt.results_dir, opt.name or default_run_name(f"{name}_test"))
    log = setup_logging(run_dir)
    trainer = build_trainer(opt, devices, logger=False, default_root_dir=run_dir)
    trainer.test(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:
        return 0

    results = module.eval_results["test"]
    dataset = datamodule.test_dataset
    summary = {
        "dataset": name, "split": split, "num": len(dataset), "checkpoint": os.path.abspath(opt.checkpoint),
        **results, "match_radius_m": radius, "precision": opt.precision, "no_fc": opt.no_fc, "sa_num": opt.sa_num,
        "sat_size": [opt.sat_size_h, opt.sat_size_w], "grd_size": [opt.grd_size_h, opt.grd_size_w],
    }
    log.info(recall_table(results, f"{name} {split}, {len(dataset)} pairs, checkpoint {opt.checkpoint}"
                                   + (f", found within {radius:g} m" if radius is not None else "")))
    write_json_atomically(run_dir / "results.json", summary)
    report = write_test_report(run_dir, Path(opt.results_dir) / "results.csv", summary, module.eval_descriptors,
                               dataset)
    log.info("figures and table row: %s", ", ".join(str(path) for path in report.values()))
    if opt.save_descriptors:
        save_descriptors(Path(opt.save_descriptors), module.eval_descriptors, dataset.ids)
        log.info("descriptors: %s", opt.save_descriptors)
    log.info("results: %s", run_dir / "results.json")
    return 0


def save_descriptors(path: Path, descriptors: dict, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, sat=descriptors["sat"].numpy(), grd=descriptors["grd"].numpy(), ids=np.asarray(ids))
    os.replace(tmp, path)


if __name__ == "__main__":
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")  # scaling on the device, by design
    run_main(main, KNOWN_ERRORS)
