"""The network as two ONNX graphs, one per branch, for runtimes without PyTorch.

Each graph maps images (B, 3, H, W) in [-1, 1] to L2-normalised descriptors (B, D), with B free; what a
caller needs to prepare its input (the image size, the field of view, the normalisation) is written into the
file's metadata, so a graph can be used without this repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from model.network import CrossViewNet
from utils.checkpoint import ModelConfig
from utils.onnx_runtime import AERIAL_FILE, GROUND_FILE

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "images", "descriptors"
BRANCH_FILES = {"sat": AERIAL_FILE, "grd": GROUND_FILE}
NORMALISATION = "RGB, channels first, float32: pixel / 127.5 - 1, so [0, 255] becomes [-1, 1]"


class OnnxUnavailable(RuntimeError):
    """The onnx package, needed to write the graphs' metadata, is not installed."""


def branch_metadata(config: ModelConfig, view: str, descriptor_size: int, source: str) -> dict[str, str]:
    """What a caller of the `view` ("sat" or "grd") graph needs to know, as the file's metadata strings."""
    height, width = config.sat_size if view == "sat" else config.net_grd_size
    return {
        "view": "aerial" if view == "sat" else "ground",
        "input": f"{INPUT_NAME}: float32 (batch, 3, {height}, {width})",
        "image_height": str(height),
        "image_width": str(width),
        "normalisation": NORMALISATION,
        "output": f"{OUTPUT_NAME}: float32 (batch, {descriptor_size}), L2-normalised; similarity = dot product",
        "descriptor_size": str(descriptor_size),
        "field_of_view_deg": f"{config.fov:g}",
        "panorama_size": "x".join(map(str, config.grd_size)),
        "backbone": config.backbone,
        "sa_num": str(config.sa_num),
        "use_fc": str(config.use_fc).lower(),
        "opset": str(OPSET),
        "source": source,
    }


def export_onnx(net: CrossViewNet, config: ModelConfig, out_dir: str | os.PathLike, source: str) -> dict[str, Path]:
    """Write `aerial.onnx` and `ground.onnx` for `net` (built from `config`, put in evaluation mode) into `out_dir`;
    each file is written beside its name and renamed into place. Returns the paths by view ("sat", "grd")."""
    try:
        import onnx
    except ImportError:
        raise OnnxUnavailable("the ONNX export needs the onnx package: pip install onnx onnxruntime") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net.eval()  # batch norms with their running statistics, as in evaluation
    written = {}
    for view in ("sat", "grd"):
        branch = net.branch(view)
        example = torch.zeros(2, 3, *(config.sat_size if view == "sat" else config.net_grd_size))
        metadata = branch_metadata(config, view, net.descriptor_size, source)
        path = out_dir / BRANCH_FILES[view]
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with torch.no_grad():
                torch.onnx.export(branch, (example,), partial, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  opset_version=OPSET, dynamo=False,
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
            graph = onnx.load(partial)
            for key, value in metadata.items():
                graph.metadata_props.add(key=key, value=value)
            graph.doc_string = f"{metadata['view']} branch of the lightweight cross-view geo-localization network"
            onnx.checker.check_model(graph)
            onnx.save(graph, partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        written[view] = path
    return written
