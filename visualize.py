"""Draw the spatial-aware attention maps of a checkpoint over evaluation images, as in the paper's figure.

`python visualize.py --checkpoint CKPT --CVUSA --data_root_cvusa DIR --num_samples 3 --out maps.png` takes
evenly spaced pairs of the evaluation split (CVUSA: val; CVACT: --eval_split) and draws each pair's K maps
(one, the max-pooled map, for a model without FC layers). The model's sizes, --sa_num and --no_fc come from
the checkpoint, as in test.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dataset.views import LimitedFieldOfView
from engine.build import KNOWN_ERRORS, build_datamodule, dataset_name
from engine.config import config_of, fill_from_checkpoint, load_checkpoint_weights
from engine.devices import parse_devices
from engine.exit import run_main
from engine.options import UsageError, build_parser, parse_options
from model.network import CrossViewNet
from utils.attention_figure import attention_figure
from utils.checkpoint import read_checkpoint
from utils.figures import save_figure


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__)
    parser.add_argument("--num_samples", type=int, default=3, help="pairs of the evaluation split to draw")
    parser.add_argument("--out", required=True, metavar="PNG", help="where to save the figure")
    opt, given = parse_options(parser, argv)
    if not opt.checkpoint:
        raise UsageError("visualize.py needs --checkpoint PATH (published weights or this project's .ckpt)")
    if opt.num_samples < 1:
        raise UsageError(f"--num_samples {opt.num_samples}: expected 1 or more")
    name = dataset_name(opt)
    devices = parse_devices(opt.gpu_ids)
    ckpt = read_checkpoint(opt.checkpoint)
    opt, stated = fill_from_checkpoint(opt, given, ckpt, opt.checkpoint)
    config = config_of(opt)
    net = CrossViewNet.from_config(config)
    load_checkpoint_weights(net, ckpt, opt.checkpoint, opt, given, stated)
    view = None if (opt.fov, opt.orientation_noise) == (360, 0) else \
        LimitedFieldOfView(opt.fov, opt.orientation_noise, seed=opt.seed)
    dataset = build_datamodule(opt).figure_pairs(view)
    net.to(torch.device(f"cuda:{devices.devices[0]}" if devices.accelerator == "gpu" else "cpu"))

    chosen = np.unique(np.linspace(0, len(dataset) - 1, min(opt.num_samples, len(dataset))).round().astype(int))
    samples = [dataset[int(i)] for i in chosen]
    kind = f"{config.sa_num} spatial-aware attention maps" if config.use_fc else "max-pooled map (no FC)"
    title = f"{name} {dataset.split}: {kind} of {Path(opt.checkpoint).name}, each scaled to its own range"
    out = save_figure(attention_figure(net, samples, title), opt.out)
    print(f"attention maps of {len(samples)} pairs: {out}")
    return 0


if __name__ == "__main__":
    run_main(main, KNOWN_ERRORS)
