"""Localize ground panoramas against a gallery of aerial images: `python localize.py --checkpoint CKPT
--aerial_dir DIR --index gallery.npz pano1.jpg pano2.jpg`.

The gallery is a folder of aerial images (ids are the file names without extension) or a CVACT-style
ACT_data.mat (`--mat`), whose panoIds name the images in the `sat/` folder beside it and whose UTM
positions are printed with each match. Its descriptors are computed once and kept in the `--index`
.npz with the model configuration and the checkpoint's path, size and modification time; a later call
with the same index skips the gallery pass, and refuses an index built by another checkpoint or
configuration, or from other images. Each panorama's top-k aerial images are printed with their
similarity, id and position, and `--figure PNG` draws them beside the panoramas. `--onnx DIR` embeds with
onnxruntime and the graphs `export.py --format onnx` wrote there instead of PyTorch and a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from dataset.cvact import read_act_data
from dataset.errors import DatasetError, check_files_exist, name_paths
from engine.config import MODEL_FLAGS, config_of, fill_from_checkpoint, load_checkpoint_weights
from engine.devices import parse_devices
from engine.exit import run_main
from engine.options import UsageError, add_model_flags, check_field_of_view, parse_options
from model.backbone import DEFAULT_BACKBONE
from model.network import CrossViewNet
from utils.checkpoint import CheckpointError, read_checkpoint
from utils.figures import Retrieval, retrievals_figure, save_figure
from utils.image_cache import DecodedImages
from utils.image_check import find_bad_images, read_record, record_path, write_record
from utils.images import ImageReadError, read_rgb, to_chw_tensor, to_model_range
from utils.onnx_runtime import load_branches

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
INDEX_FORMAT = 2  # 2: each image's size and modification time are kept, to notice files overwritten in place
MAT_SPLITS = ("all", "train", "val", "test")
KNOWN_ERRORS = (UsageError, DatasetError, CheckpointError, ImageReadError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("panoramas", nargs="*", metavar="PANORAMA", help="ground panoramas to localize")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="published weights or this project's .ckpt")
    model.add_argument("--onnx", metavar="DIR", help="embed with onnxruntime, with the graphs export.py --format onnx "
                                                     "wrote into DIR, instead of PyTorch")
    gallery = parser.add_mutually_exclusive_group()
    gallery.add_argument("--aerial_dir", metavar="DIR", help="folder of aerial images (ids: file names)")
    gallery.add_argument("--mat", metavar="PATH", help="CVACT-style ACT_data.mat; images in sat/ beside it")
    add("--mat_split", choices=MAT_SPLITS, default="all", help="with --mat: which of its panoIds form the gallery")
    add("--index", metavar="PATH.npz", help="gallery descriptors: read when present, written when not")
    add("--rebuild_index", action="store_true", help="recompute the gallery and overwrite --index")
    add("--top_k", type=int, default=5, help="aerial matches printed per panorama")
    add("--figure", metavar="PNG", help="also draw each panorama beside its top matches")
    add("--gpu_ids", "--gpu", dest="gpu_ids", default="0", help='GPU id such as "0"; "-1" for the CPU')
    add("--batch_size", type=int, default=32, help="aerial images per forward pass")
    add("--num_workers", type=int, default=2, help="image-reading processes for the gallery pass")
    add("--skip_bad_images", action="store_true",
        help="index the gallery without the images that cannot be decoded whole, naming each; without it, "
             "they stop the call before the gallery pass")
    add_model_flags(parser, "the field of view in degrees the network was trained for; below 360 each image is "
                            "taken as that view itself, resized to the ground branch's input")
    add("--debug", action="store_true", help="full tracebacks")
    return parser


@dataclass
class Gallery:
    """Aerial images to search: ids, paths, (N, 2) positions or None, and where they were listed from.

    `stamps` (N, 2) holds each file's size and modification time in nanoseconds, read from the files when
    not given.
    """

    ids: list[str]
    paths: list[str]
    positions: np.ndarray | None
    source: str
    stamps: np.ndarray | None = None

    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.stamps is None:
            self.stamps = file_stamps(self.paths)

    def without(self, paths: Sequence[str]) -> Gallery:
        """This gallery less the images at `paths`, which it remembers as skipped."""
        dropped = set(paths)
        kept = [number for number, path in enumerate(self.paths) if path not in dropped]
        return Gallery([self.ids[k] for k in kept], [self.paths[k] for k in kept],
                       None if self.positions is None else self.positions[kept], self.source, self.stamps[kept],
                       sorted(dropped | set(self.skipped)))


def file_stamps(paths: Sequence[str]) -> np.ndarray:
    """(size, mtime_ns) of each file as int64, (N, 2); a file overwritten in place changes its mtime."""
    stats = [os.stat(path) for path in paths]
    return np.array([(stat.st_size, stat.st_mtime_ns) for stat in stats], dtype=np.int64).reshape(-1, 2)


@dataclass
class GalleryIndex:
    """A gallery with its L2-normalised descriptors (N, D) and the configuration that computed them.

    The images skipped as unusable when it was built (`--skip_bad_images`) are in `gallery.skipped`.
    """

    gallery: Gallery
    descriptors: np.ndarray
    config: dict[str, Any]


def list_aerial_dir(folder: str) -> Gallery:
    if not os.path.isdir(folder):
        raise UsageError(f"--aerial_dir {folder}: not a folder; expected a folder of aerial images")
    paths = sorted(os.path.abspath(entry.path) for entry in os.scandir(folder)
                   if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise UsageError(f"--aerial_dir {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return Gallery([Path(p).stem for p in paths], paths, None, os.path.abspath(folder))


def list_act_data(mat_path: str, split: str) -> Gallery:
    """The panoIds of a CVACT-style index file (all, or one split's) with their aerial images and UTM positions."""
    # every split's read returns all panoIds and positions; "all" just ignores the split's indices
    pano_ids, utm, indices = read_act_data(mat_path, "train" if split == "all" else split)
    positions = np.arange(len(pano_ids)) if split == "all" else indices - 1
    ids = [pano_ids[i] for i in positions]
    sat_dir = os.path.join(os.path.dirname(os.path.abspath(mat_path)), "sat")
    paths = [os.path.join(sat_dir, f"{pano_id}_satView_polish.jpg") for pano_id in ids]
    check_files_exist(paths, f"aerial images of {mat_path} (--mat_split {split})",
                      f"expected {sat_dir}/<panoId>_satView_polish.jpg; --mat_split picks a split whose images "
                      "you have")
    return Gallery(ids, paths, utm[positions], f"{os.path.abspath(mat_path)}:{split}")


def index_config(opt: argparse.Namespace, branches: OnnxBranches | None) -> dict[str, Any]:
    """What the gallery descriptors depend on: the checkpoint and the model flags, or the ONNX graphs (`branches`);
    an index whose configuration differs is stale."""
    if branches is not None:
        graph = branches.aerial.path
        stat = os.stat(graph)
        return {"format": INDEX_FORMAT, "onnx": os.path.abspath(graph), "onnx_mtime": stat.st_mtime,
                "onnx_size": stat.st_size, "sat_size": list(branches.sat_size), "grd_size": list(branches.grd_size)}
    stat = os.stat(opt.checkpoint)
    return {
        "format": INDEX_FORMAT,
        "checkpoint": os.path.abspath(opt.checkpoint),
        "checkpoint_mtime": stat.st_mtime,
        "checkpoint_size": stat.st_size,
        "sat_size": [opt.sat_size_h, opt.sat_size_w],
        "grd_size": [opt.grd_size_h, opt.grd_size_w],
        "sa_num": opt.sa_num,
        "use_fc": not opt.no_fc,
        # named only when not the paper's, so that indices written before backbones had names stay valid
        **({} if opt.backbone == DEFAULT_BACKBONE else {"backbone": opt.backbone}),
    }


class TorchBranches:
    """The network's two branches on a device: uint8 images (B, 3, H, W) in, descriptors (B, D) float32 out."""

    def __init__(self, net: CrossViewNet, device: torch.device) -> None:
        self.net, self.device = net.to(device).eval(), device
        self.sat_size, self.grd_size = net.sat_size, net.grd_size

    @torch.no_grad()
    def embed_sat(self, images: torch.Tensor) -> np.ndarray:
        return self.net.embed_sat(to_model_range(images.to(self.device))).float().cpu().numpy()

    @torch.no_grad()
    def embed_grd(self, images: torch.Tensor) -> np.ndarray:
        return self.net.embed_grd(to_model_range(images.to(self.device))).float().cpu().numpy()


class OnnxBranches:
    """The exported graphs in onnxruntime, used as `TorchBranches` is; their sizes come from their metadata."""

    def __init__(self, folder: str) -> None:
        self.aerial, self.ground = load_branches(folder)
        self.sat_size, self.grd_size = self.aerial.image_size, self.ground.image_size

    def embed_sat(self, images: torch.Tensor) -> np.ndarray:
        return self.aerial(to_model_range(images).numpy())

    def embed_grd(self, images: torch.Tensor) -> np.ndarray:
        return self.ground(to_model_range(images).numpy())


Branches = TorchBranches | OnnxBranches


def embed_gallery(branches: Branches, gallery: Gallery, batch_size: int, num_workers: int) -> np.ndarray:
    """Descriptors of every aerial image, (N, D) float32, in gallery order."""
    loader = DataLoader(DecodedImages(gallery.paths, branches.sat_size), batch_size=batch_size,
                        num_workers=num_workers)
    parts = []
    for done, images in enumerate(loader, start=1):
        parts.append(branches.embed_sat(images))
        print(f"\rgallery pass: {min(done * batch_size, len(gallery.paths))}/{len(gallery.paths)} aerial images",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return np.concatenate(parts)


def save_index(path: Path, index: GalleryIndex) -> None:
    """Write beside `path`, then rename over it, so an interrupted pass never leaves half an index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gallery = index.gallery
    arrays = {
        "descriptors": index.descriptors,
        "ids": np.asarray(gallery.ids, dtype=str),
        "paths": np.asarray(gallery.paths, dtype=str),
        "config": np.asarray(json.dumps({**index.config, "source": gallery.source})),
        "stamps": gallery.stamps,
        "skipped": np.asarray(gallery.skipped, dtype=str),
    }
    if gallery.positions is not None:
        arrays["positions"] = gallery.positions
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_index(path: Path) -> GalleryIndex:
    """An index written by `save_index`; anything else is a one-line error."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            config = json.loads(str(arrays["config"]))
            positions = arrays["positions"] if "positions" in arrays else None
            stamps = arrays["stamps"] if "stamps" in arrays else np.zeros((0, 2), dtype=np.int64)  # format 1
            skipped = [str(p) for p in arrays["skipped"]] if "skipped" in arrays else []
            gallery = Gallery([str(i) for i in arrays["ids"]], [str(p) for p in arrays["paths"]], positions,
                              config.pop("source"), stamps, skipped)
            return GalleryIndex(gallery, arrays["descriptors"].astype(np.float32), config)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        what = "an empty file (0 bytes)" if path.stat().st_size == 0 else \
            f"not an index written by localize.py ({type(exc).__name__}: {exc})"
        raise UsageError(f"--index {path}: {what}; pass --rebuild_index to overwrite it") from None


def stale_reason(index: GalleryIndex, config: dict[str, Any], gallery: Gallery | None) -> str | None:
    """Why an index cannot serve this call (other checkpoint or graphs, configuration or images), or None."""
    if ("onnx" in index.config) != ("onnx" in config):
        return f"it was built with {_embedder(index.config)}, this call uses {_embedder(config)}"
    for key, wanted in config.items():
        found = index.config.get(key)
        if found != wanted:
            if key == "checkpoint_mtime":
                found, wanted = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) for t in (found, wanted))
                return f"the checkpoint was modified at {wanted}; the index holds its version of {found}"
            return f"it was built with {key} {found}, this call uses {wanted}"
    if gallery is not None:
        if gallery.source != index.gallery.source:
            return f"it indexes {index.gallery.source}, this call asks for {gallery.source}"
        if gallery.paths != index.gallery.paths:
            return f"the images in {gallery.source} changed since it was built"
        if not np.array_equal(gallery.stamps, index.gallery.stamps):
            changed = np.flatnonzero((gallery.stamps != index.gallery.stamps).any(axis=1))
            return (f"{len(changed)} of the images in {gallery.source} were rewritten since it was built "
                    f"({gallery.paths[changed[0]]} first)")
    return None


def _embedder(config: dict[str, Any]) -> str:
    return f"the ONNX graph {config['onnx']}" if "onnx" in config else f"the checkpoint {config.get('checkpoint')}"


def listed_gallery(opt: argparse.Namespace) -> Gallery | None:
    """The images --aerial_dir or --mat name, or None when neither is given."""
    if opt.aerial_dir is not None:
        return list_aerial_dir(opt.aerial_dir)
    if opt.mat is not None:
        return list_act_data(opt.mat, opt.mat_split)
    return None


def reusable_index(opt: argparse.Namespace, config: dict[str, Any], gallery: Gallery | None) -> GalleryIndex | None:
    """The index in --index when it exists and fits this call; None when one has to be built."""
    path = Path(opt.index) if opt.index else None
    if path is not None and path.is_file() and not opt.rebuild_index:
        index = load_index(path)
        if gallery is not None and index.gallery.skipped:
            gallery = gallery.without(index.gallery.skipped)
        reason = stale_reason(index, config, gallery)
        if reason is not None:
            raise UsageError(f"--index {path} is stale: {reason}; pass --rebuild_index to rebuild it")
        print(f"using the index {path}: {len(index.gallery.ids)} aerial images of {index.gallery.source}, "
              "gallery pass skipped")
        if index.gallery.skipped:
            print(f"  without the {len(index.gallery.skipped)} unusable images skipped when it was built; "
                  "--rebuild_index takes in those since mended")
        return index
    if gallery is None:
        if path is None:
            reason = "no --index given"
        elif opt.rebuild_index:
            reason = f"--rebuild_index needs the images to index {path} from"
        else:
            reason = f"--index {path} does not exist"
        raise UsageError(f"{reason}; pass --aerial_dir DIR or --mat ACT_data.mat to build the gallery")
    return None


def usable_gallery(gallery: Gallery, skip_bad_images: bool, workers: int) -> Gallery:
    """The gallery once every image is found decodable and whole; unusable ones stop the call, all named, or
    with `skip_bad_images` are left out and named on the console. Images found good before are not decoded."""
    record = record_path(gallery.paths)
    bad, good = find_bad_images(gallery.paths, workers, read_record(record))
    if good:
        write_record(record, good)
    if not bad:
        return gallery
    named = [f"{path} ({problem})" for path, problem in bad]
    if not skip_bad_images or len(bad) == len(gallery.paths):
        raise DatasetError(f"{len(bad)} of {len(gallery.paths)} aerial images of {gallery.source} cannot be used: "
                           f"{name_paths(named)}; mend or remove them, or pass --skip_bad_images to index the rest")
    print(f"skipping {len(bad)} of {len(gallery.paths)} aerial images that cannot be used:", file=sys.stderr)
    for line in named:
        print(f"  {line}", file=sys.stderr)
    return gallery.without([path for path, _ in bad])


def build_index(opt: argparse.Namespace, config: dict[str, Any], gallery: Gallery, branches: Branches) -> GalleryIndex:
    """One pass over the gallery, saved to --index when given."""
    index = GalleryIndex(gallery, embed_gallery(branches, gallery, opt.batch_size, opt.num_workers), config)
    if opt.index:
        save_index(Path(opt.index), index)
        print(f"indexed {len(gallery.ids)} aerial images of {gallery.source} into {opt.index}")
    else:
        print(f"indexed {len(gallery.ids)} aerial images of {gallery.source} (pass --index PATH.npz to keep them)")
    return index


@dataclass
class Match:
    rank: int
    similarity: float
    id: str
    path: str
    position: np.ndarray | None


def localize(branches: Branches, index: GalleryIndex, panorama: np.ndarray, top_k: int) -> list[Match]:
    """The `top_k` aerial images most similar to a panorama (uint8 H x W x 3 at the model's size), best first."""
    query = branches.embed_grd(to_chw_tensor(panorama)[None])[0]
    similarities = index.descriptors @ query
    order = np.argsort(-similarities, kind="stable")[:top_k]
    gallery = index.gallery
    return [Match(rank, float(similarities[i]), gallery.ids[i], gallery.paths[i],
                  None if gallery.positions is None else gallery.positions[i])
            for rank, i in enumerate(order, start=1)]


def print_matches(panorama_path: str, matches: Sequence[Match], gallery_size: int) -> None:
    print(f"\n{panorama_path}: top {len(matches)} of {gallery_size} aerial images")
    with_positions = matches[0].position is not None
    id_width = max(len("id"), *(len(m.id) for m in matches))
    header = f"  {'rank':>4}  {'similarity':>10}  {'id':<{id_width}}"
    print(header + (f"  {'easting':>12}  {'northing':>12}" if with_positions else "") + "  aerial image")
    for m in matches:
        line = f"  {m.rank:>4}  {m.similarity:>10.4f}  {m.id:<{id_width}}"
        if with_positions:
            line += f"  {m.position[0]:>12.2f}  {m.position[1]:>12.2f}"
        print(f"{line}  {m.path}")


def matches_figure(panoramas: Sequence[tuple[str, np.ndarray]], results: Sequence[list[Match]],
                   sat_size: tuple[int, int]) -> Figure:
    """Each panorama beside its top matches (no true match is known, so every frame is grey)."""
    retrievals = [
        Retrieval(query=image, query_title=Path(path).name,
                  images=[read_rgb(m.path, sat_size) for m in matches],
                  titles=[f"rank {m.rank}  s={m.similarity:.3f}\n{m.id}" for m in matches],
                  is_match=[False] * len(matches))
        for (path, image), matches in zip(panoramas, results, strict=True)
    ]
    return retrievals_figure(retrievals, "ground panoramas and their most similar aerial images (s: cosine similarity)")


def main(argv: list[str] | None = None) -> int:
    opt, given = parse_options(build_parser(), argv)
    if opt.top_k < 1:
        raise UsageError(f"--top_k {opt.top_k}: expected 1 or more")
    devices = parse_devices(opt.gpu_ids)
    device = torch.device(f"cuda:{devices.devices[0]}" if devices.accelerator == "gpu" else "cpu")
    missing = [path for path in opt.panoramas if not os.path.isfile(path)]
    if missing:
        raise ImageReadError(f"cannot read panorama {missing[0]}: file does not exist", missing[0])
    check_field_of_view(opt.fov)
    branches, ckpt, stated = None, None, None
    if opt.onnx:
        flags = [name for name in MODEL_FLAGS if name in given]
        if flags:
            raise UsageError(f"--{flags[0]}: the ONNX graphs in {opt.onnx} state their own sizes; drop the flag")
        branches = OnnxBranches(opt.onnx)
    else:
        ckpt = read_checkpoint(opt.checkpoint)
        opt, stated = fill_from_checkpoint(opt, given, ckpt, opt.checkpoint)
    config = index_config(opt, branches)
    gallery = listed_gallery(opt)
    index = reusable_index(opt, config, gallery)  # user mistakes surface here, before the network is built
    if index is None:
        gallery = usable_gallery(gallery, opt.skip_bad_images, max(1, opt.num_workers))
    if branches is None:
        net = CrossViewNet.from_config(config_of(opt))
        load_checkpoint_weights(net, ckpt, opt.checkpoint, opt, given, stated)
        del ckpt
        branches = TorchBranches(net, device)
    if index is None:
        index = build_index(opt, config, gallery, branches)
    if not opt.panoramas:
        print("no panoramas given: the gallery is ready")
        return 0
    panoramas = [(path, read_rgb(path, branches.grd_size)) for path in opt.panoramas]
    top_k = min(opt.top_k, len(index.gallery.ids))
    results = [localize(branches, index, image, top_k) for _, image in panoramas]
    for (path, _), matches in zip(panoramas, results, strict=True):
        print_matches(path, matches, len(index.gallery.ids))
    if opt.figure:
        figure_path = save_figure(matches_figure(panoramas, results, branches.sat_size), opt.figure)
        print(f"\nfigure: {figure_path}")
    return 0


if __name__ == "__main__":
    run_main(main, KNOWN_ERRORS)
