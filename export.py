"""Write a checkpoint for use elsewhere.

`python export.py RUN/best.ckpt OUT.pth` writes the authors' published format (`{"last_epoch", "best_acc",
"count", "retrieval_model_dict", "optimizer_dict"}`, their key names), loadable by their code with
`load_state_dict(strict=True)`.

`python export.py CHECKPOINT DIR --format onnx` writes DIR/aerial.onnx and DIR/ground.onnx, one graph per branch
from images in [-1, 1] to L2-normalised descriptors, with a free batch size and what their input needs in
their metadata; for published weights the model flags give the sizes, as for test.py.
"""

from __future__ import annotations

import argparse
import os

from engine.build import KNOWN_ERRORS
from engine.config import MODEL_FLAGS, config_of, fill_from_checkpoint, load_checkpoint_weights
from engine.exit import run_main
from engine.options import UsageError, add_model_flags, parse_options
from model.network import CrossViewNet
from model.onnx_export import OPSET, export_onnx
from utils.checkpoint import PUBLISHED_MODEL_KEY, export_published, read_checkpoint

FORMATS = ("published", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="this project's .ckpt, or published weights (for --format onnx)")
    parser.add_argument("out", help="the .pth file to write (published), or the folder for the graphs (onnx)")
    parser.add_argument("--format", choices=FORMATS, default="published",
                        help="published: the authors' .pth; onnx: two ONNX graphs, one per branch")
    add_model_flags(parser, "with --format onnx: the field of view the network was trained for")
    parser.add_argument("--debug", action="store_true", help="full tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    opt, given = parse_options(build_parser(), argv)
    if opt.format == "published":
        flags = [name for name in MODEL_FLAGS if name in given]
        if flags:
            raise UsageError(f"--{flags[0]}: the published format copies the checkpoint's tensors as they are; the "
                             "model flags are for --format onnx")
        published = export_published(opt.checkpoint, opt.out)
        print(f"{opt.out}: published format, {len(published[PUBLISHED_MODEL_KEY])} tensors, last_epoch "
              f"{published['last_epoch']}, best_acc {published['best_acc']}")
        return 0
    ckpt = read_checkpoint(opt.checkpoint)
    opt, stated = fill_from_checkpoint(opt, given, ckpt, opt.checkpoint)
    config = config_of(opt)
    net = CrossViewNet.from_config(config)
    load_checkpoint_weights(net, ckpt, opt.checkpoint, opt, given, stated)
    del ckpt
    written = export_onnx(net, config, opt.out, os.path.abspath(opt.checkpoint))
    for view, path in written.items():
        height, width = config.sat_size if view == "sat" else config.net_grd_size
        print(f"{path}: {'aerial' if view == 'sat' else 'ground'} branch, images (batch, 3, {height}, {width}) in "
              f"[-1, 1] -> descriptors (batch, {net.descriptor_size}), opset {OPSET}")
    return 0


if __name__ == "__main__":
    run_main(main, KNOWN_ERRORS)
