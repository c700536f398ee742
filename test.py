"""Evaluate a checkpoint (published or this project's): `python test.py --CVUSA --checkpoint weight/cvusa.pth`.

A checkpoint of this project gives the model's sizes, `--sa_num`, `--no_fc`, `--fov` and `--orientation_noise`
itself; for published weights `--sa_num` and `--no_fc` follow from the tensors and the sizes default to the
paper's. Every flag of the authors' parser is accepted; those that cannot change a test are named as unused.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from engine.build import (
    KNOWN_ERRORS,
    build_datamodule,
    build_module,
    build_trainer,
    check_images,
    dataset_name,
    resolve_precision,
)
from engine.cluster import job_run_dir
from engine.config import fill_from_checkpoint, load_checkpoint_weights
from engine.continuation import stored_options
from engine.devices import is_first_process, parse_devices
from engine.exit import run_main
from engine.logs import setup_logging, start_logging
from engine.options import TRAINING_ONLY, UsageError, build_parser, parse_options, unused_options, with_options
from engine.run_folder import default_run_name, make_run_dir
from utils.checkpoint import read_checkpoint
from utils.files import write_json_atomically
from utils.report import write_test_report

DIRECTIONS = {"p2s": "ground->aerial", "s2p": "aerial->ground"}


def recall_table(results: dict[str, Any], title: str) -> str:
    """The recall figures laid out like the paper's tables, then VIGOR's hit rate and localization error."""
    names = list(results["p2s"])
    lines = [title, f"{'':<16}" + "".join(f"{n.replace('r@', 'R@'):>9}" for n in names)]
    for direction, label in DIRECTIONS.items():
        if direction in results:
            lines.append(f"{label:<16}" + "".join(f"{results[direction][n]:>9.2f}" for n in names))
    if "hit_rate" in results:
        lines.append(f"{'hit rate':<16}{results['hit_rate']:>9.2f}")
    if "localization" in results:
        where = results["localization"]
        lines.append(f"{'top-1 error':<16}median {where['median_m']:.2f} m, within 10 m {where['accuracy_10m']:.2f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    opt, given = parse_options(build_parser(__doc__), argv)
    if not opt.checkpoint:
        raise UsageError("test.py needs --checkpoint PATH (published weights or this project's .ckpt)")
    start_logging(verbose=opt.debug)
    name = dataset_name(opt)
    devices = parse_devices(opt.gpu_ids, opt.cpu_procs, num_nodes=opt.num_nodes)
    precision, precision_reason = resolve_precision(opt.precision, devices)
    opt = with_options(opt, precision=precision)
    if opt.match_radius < 0:
        raise UsageError(f"--match_radius {opt.match_radius:g}: expected metres >= 0 (0: one-to-one pairing)")

    ckpt = read_checkpoint(opt.checkpoint)
    opt, stated = fill_from_checkpoint(opt, given, ckpt, opt.checkpoint)
    if "orientation_noise" not in given and stated is not None:  # test as the run trained, unless told otherwise
        trained_with = stored_options(ckpt, opt.checkpoint) or {}
        opt = with_options(opt, orientation_noise=float(trained_with.get("orientation_noise", 0.0)))
    datamodule = build_datamodule(opt)
    split = datamodule.evaluation_split
    module = build_module(opt, pretrained=False)
    load_checkpoint_weights(module.net, ckpt, opt.checkpoint, opt, given, stated)
    del ckpt
    datamodule.setup("test")

    run_dir = job_run_dir(lambda: make_run_dir(opt.results_dir, opt.name or default_run_name(f"{name}_test")), devices)
    log = setup_logging(run_dir, verbose=opt.debug)
    check_images(datamodule, run_dir, log)
    unused = unused_options(opt, given, TRAINING_ONLY)
    if unused and is_first_process():
        log.info(unused)
    if precision_reason and is_first_process():
        log.info("--precision auto: %s, since %s", opt.precision, precision_reason)
    trainer = build_trainer(opt, devices, logger=False, default_root_dir=run_dir)
    trainer.test(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:
        return 0

    evaluation = module.evaluations["test"]
    results, matching = evaluation.figures, evaluation.matching
    queries, references = datamodule.evaluation_datasets("test")
    paired = queries is references
    summary = {
        "dataset": name, "split": split, "num": len(queries), "checkpoint": os.path.abspath(opt.checkpoint),
        **results, "protocol": matching.name, "match_radius_m": matching.radius_m, "fov": opt.fov,
        "orientation_noise": opt.orientation_noise, "seed": opt.seed, "precision": opt.precision, "no_fc": opt.no_fc,
        "sa_num": opt.sa_num, "backbone": opt.backbone, "sat_size": [opt.sat_size_h, opt.sat_size_w],
        "grd_size": [opt.grd_size_h, opt.grd_size_w],
    }
    if not paired:
        summary["gallery"] = len(references)
    size = f"{len(queries)} pairs" if paired else f"{len(queries)} queries, {len(references)} references"
    view = f", field of view {opt.fov:g}, orientation noise {opt.orientation_noise:g}" \
        if (opt.fov, opt.orientation_noise) != (360, 0) else ""
    log.info(recall_table(results, f"{name} {split}, {size}, checkpoint {opt.checkpoint}, "
                                   f"protocol: {matching.name}{view}"))
    write_json_atomically(run_dir / "results.json", summary)
    report = write_test_report(run_dir, Path(opt.results_dir) / "results.csv", summary, evaluation, queries,
                               references)
    log.info("figures and table row: %s", ", ".join(str(path) for path in report.values()))
    if opt.save_descriptors:
        save_descriptors(Path(opt.save_descriptors), evaluation.descriptors, queries.ids,
                         None if paired else references.ids)
        log.info("descriptors: %s", opt.save_descriptors)
    log.info("results: %s", run_dir / "results.json")
    return 0


def save_descriptors(path: Path, descriptors: dict, ids: list[str], sat_ids: list[str] | None = None) -> None:
    """sat, grd and ids (the pairs', or the queries' with sat_ids the gallery's) in one .npz, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    extra = {} if sat_ids is None else {"sat_ids": np.asarray(sat_ids)}
    np.savez(tmp, sat=descriptors["sat"].numpy(), grd=descriptors["grd"].numpy(), ids=np.asarray(ids), **extra)
    os.replace(tmp, path)


if __name__ == "__main__":
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")  # scaling on the device, by design
    run_main(main, KNOWN_ERRORS)
