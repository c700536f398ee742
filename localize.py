"""Localize ground panoramas against aerial imagery: an orthophoto, a folder of aerial images or a CVACT index.

    python localize.py --checkpoint CKPT --orthophoto city.tif --index city_index --out answers pano.jpg

The gallery is one of: `--orthophoto` (a GeoTIFF in any projection, cut into north-up tiles of `--tile_m`
metres every `--stride_m`; `utils/orthophoto.py`), `--aerial_dir` (a folder of aerial images; positions from
VIGOR's names or from `--positions CSV`), or `--mat` (a CVACT-style ACT_data.mat whose panoIds name the
images in `sat/` beside it, with UTM positions). Its descriptors are kept in the `--index` folder
(`engine/gallery_index.py`) with the embedder and the gallery they came from: a later call reuses it, a
killed build continues, and an index of another checkpoint, configuration or gallery is refused. Search is
exact, or compressed (`--index_type ivfpq`) with the shortlist re-ranked exactly; `auto` picks by size.

Each panorama gets an estimated position (`--estimate top1|vote`, `utils/place_estimate.py`), a confidence
(the margin over the best tile of another place), and its top-k tiles with their positions and similarities;
`--out DIR` writes them as answers.json, answers.csv and matches.csv, and map.html (the footprints, the
estimate and, with `--truth CSV`, the true position), plus the accuracy against the share answered when the
truth is known. `--figure PNG` draws each panorama beside its matches. `--onnx DIR` embeds with onnxruntime
and the graphs `export.py --format onnx` wrote there instead of PyTorch and a checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from dataset.errors import DatasetError, name_paths
from engine.config import MODEL_FLAGS, config_of, fill_from_checkpoint, load_checkpoint_weights
from engine.devices import parse_devices
from engine.exit import run_main
from engine.gallery import (
    MAT_SPLITS,
    FileGallery,
    Gallery,
    OrthophotoRequest,
    list_act_data,
    list_aerial_dir,
    read_positions_csv,
)
from engine.gallery_index import (
    MANIFEST,
    GalleryIndex,
    build_index,
    check_folder,
    choose_kind,
    file_changes,
    open_index,
    read_manifest,
    remove_index,
    stale_reason,
    stored_files,
    temporary_folder,
)
from engine.options import UsageError, add_model_flags, check_field_of_view, parse_options
from model.backbone import DEFAULT_BACKBONE
from model.network import CrossViewNet
from utils.checkpoint import CheckpointError, read_checkpoint
from utils.descriptor_index import INDEX_KINDS, GalleryIndexError, IvfPqParams, Searcher, build_ivfpq, search_entry
from utils.figures import Retrieval, finish_percent_axes, new_figure, retrievals_figure, save_figure
from utils.files import write_json_atomically, write_text_atomically
from utils.geo import haversine_m
from utils.image_check import find_bad_images, read_record, record_path, write_record
from utils.images import ImageReadError, read_rgb, to_chw_tensor, to_model_range
from utils.map_page import Backdrop, MapLayer, MapUnavailable, write_map
from utils.onnx_runtime import load_branches
from utils.orthophoto import DEFAULT_FOOTPRINT, FOOTPRINTS_M, OrthophotoError, footprint_m, overview
from utils.place_estimate import ESTIMATES, coverage_curve, estimate_position, place_margin

INDEX_CONFIG_FORMAT = 2  # what the descriptors depend on; 2: each image's size and modification time
CANDIDATES = 20  # tiles behind each estimate and confidence, whatever --top_k prints
KNOWN_ERRORS = (UsageError, DatasetError, CheckpointError, ImageReadError, OrthophotoError, GalleryIndexError,
                MapUnavailable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("panoramas", nargs="*", metavar="PANORAMA", help="ground panoramas to localize")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="published weights or this project's .ckpt")
    model.add_argument("--onnx", metavar="DIR", help="embed with onnxruntime, with the graphs export.py --format onnx "
                                                     "wrote into DIR, instead of PyTorch")
    gallery = parser.add_mutually_exclusive_group()
    gallery.add_argument("--orthophoto", metavar="GEOTIFF", help="an orthophoto or satellite mosaic, any projection, "
                                                                  "cut into north-up tiles")
    gallery.add_argument("--aerial_dir", metavar="DIR", help="folder of aerial images (ids: file names)")
    gallery.add_argument("--mat", metavar="PATH", help="CVACT-style ACT_data.mat; images in sat/ beside it")
    add("--tile_m", default=DEFAULT_FOOTPRINT, metavar="M|DATASET",
        help="with --orthophoto: a tile's ground size in metres, or the footprint of the data the model was trained "
             "on: " + ", ".join(f"{name} {metres:g} m" for name, metres in FOOTPRINTS_M.items()) + " (default: "
             f"{DEFAULT_FOOTPRINT})")
    add("--stride_m", type=float, default=None, metavar="M", help="with --orthophoto: metres between tile centres "
                                                                  "(default: half a tile)")
    add("--max_nodata", type=float, default=0.05, help="with --orthophoto: leave out tiles with more than this share "
                                                       "of nodata pixels (default: 0.05)")
    add("--positions", metavar="CSV", help="with --aerial_dir: name,latitude,longitude of each image (VIGOR's names "
                                           "give them without it)")
    add("--mat_split", choices=MAT_SPLITS, default="all", help="with --mat: which of its panoIds form the gallery")
    add("--index", metavar="DIR", help="index folder: read when it fits, built (or a killed build continued) when not")
    add("--rebuild_index", action="store_true", help="recompute the gallery and overwrite --index")
    add("--index_type", choices=("auto", *INDEX_KINDS), default="auto",
        help="exact search, or ivfpq (compressed, shortlist re-ranked exactly); auto: exact up to 200,000 images "
             "(default: auto)")
    add("--top_k", type=int, default=5, help="aerial matches printed and written per panorama (default: 5)")
    add("--estimate", choices=ESTIMATES, default="top1",
        help="the position: the best tile's centre, or a similarity-weighted vote of the top tiles near it, "
             "which did no better on the synthetic world (README) (default: top1)")
    add("--truth", metavar="CSV", help="name,latitude,longitude of the panoramas: their errors in metres, the "
                                       "true positions on the map, and the accuracy against the share answered")
    add("--correct_m", type=float, default=25.0, help="with --truth: an answer within this many metres is correct "
                                                      "(default: 25)")
    add("--out", metavar="DIR", help="write answers.json, answers.csv, matches.csv and map.html there")
    add("--figure", metavar="PNG", help="also draw each panorama beside its top matches")
    add("--gpu_ids", "--gpu", dest="gpu_ids", default="0", help='GPU id such as "0"; "-1" for the CPU')
    add("--batch_size", type=int, default=32, help="aerial images per forward pass (default: 32)")
    add("--num_workers", type=int, default=2, help="image-reading processes for the gallery pass (default: 2)")
    add("--skip_bad_images", action="store_true",
        help="index the gallery without the images that cannot be decoded whole, naming each; without it, "
             "they stop the call before the gallery pass")
    add_model_flags(parser, "the field of view in degrees the network was trained for; below 360 each image is "
                            "taken as that view itself, resized to the ground branch's input")
    add("--debug", action="store_true", help="full tracebacks")
    return parser


def index_config(opt: argparse.Namespace, branches: OnnxBranches | None) -> dict[str, Any]:
    """What the gallery descriptors depend on: the checkpoint and the model flags, or the ONNX graphs (`branches`);
    an index whose configuration differs is stale."""
    if branches is not None:
        graph = branches.aerial.path
        stat = os.stat(graph)
        return {"format": INDEX_CONFIG_FORMAT, "onnx": os.path.abspath(graph), "onnx_mtime": stat.st_mtime,
                "onnx_size": stat.st_size, "sat_size": list(branches.sat_size), "grd_size": list(branches.grd_size)}
    stat = os.stat(opt.checkpoint)
    return {
        "format": INDEX_CONFIG_FORMAT,
        "checkpoint": os.path.abspath(opt.checkpoint),
        "checkpoint_mtime": stat.st_mtime,
        "checkpoint_size": stat.st_size,
        "sat_size": [opt.sat_size_h, opt.sat_size_w],
        "grd_size": [opt.grd_size_h, opt.grd_size_w],
        "sa_num": opt.sa_num,
        "use_fc": not opt.no_fc,
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


def listed_gallery(opt: argparse.Namespace) -> FileGallery | OrthophotoRequest | None:
    """The gallery --orthophoto, --aerial_dir or --mat names, or None when none is given."""
    if opt.positions is not None and opt.aerial_dir is None:
        raise UsageError("--positions: goes with --aerial_dir (an orthophoto and ACT_data.mat give their own)")
    if opt.orthophoto is not None:
        if not os.path.isfile(opt.orthophoto):
            raise UsageError(f"--orthophoto {opt.orthophoto}: no such file; expected a GeoTIFF")
        tile_m = footprint_m(opt.tile_m)
        stride_m = tile_m / 2 if opt.stride_m is None else opt.stride_m
        if not 0 <= opt.max_nodata < 1:
            raise UsageError(f"--max_nodata {opt.max_nodata}: expected a share from 0 to below 1")
        return OrthophotoRequest(opt.orthophoto, tile_m, stride_m, opt.max_nodata)
    if opt.aerial_dir is not None:
        return list_aerial_dir(opt.aerial_dir, opt.positions)
    if opt.mat is not None:
        return list_act_data(opt.mat, opt.mat_split)
    return None


def reusable_index(opt: argparse.Namespace, config: dict[str, Any], listed) -> GalleryIndex | None:
    """The index in --index when it is finished and fits this call; None when one has to be built."""
    folder = Path(opt.index) if opt.index else None
    if folder is not None:
        check_folder(folder)
    manifest = None if folder is None or opt.rebuild_index else read_manifest(folder)
    if manifest is not None:
        reason = stale_reason(manifest, config, None if listed is None else listed.describe())
        if reason is not None and isinstance(listed, FileGallery) and reason.startswith("the images in"):
            stored = stored_files(folder, manifest)
            reason = (stored is not None and file_changes(stored, listed)) or reason
        if reason is not None:
            raise UsageError(f"--index {folder} is stale: {reason}; pass --rebuild_index to rebuild it")
        index = with_search_kind(folder, manifest, opt.index_type)
        print(f"using the index {folder}: {len(index.gallery):,} aerial images of {index.gallery.source} "
              f"({index.kind} search), gallery pass skipped")
        if index.gallery.skipped:
            print(f"  without the {len(index.gallery.skipped)} unusable images skipped when it was built; "
                  "--rebuild_index takes in those since mended")
        return index
    if listed is None:
        if folder is None:
            reason = "no --index given"
        elif opt.rebuild_index:
            reason = f"--rebuild_index needs the images to index {folder} from"
        else:
            reason = f"--index {folder} holds no finished index"
        raise UsageError(f"{reason}; pass --orthophoto GEOTIFF, --aerial_dir DIR or --mat ACT_data.mat to build one")
    return None


def with_search_kind(folder: Path, manifest: dict[str, Any], asked: str) -> GalleryIndex:
    """The stored index, searched as `asked` ("auto": as it was built); a compressed index asked of one built
    exact is built from the stored descriptors, without another gallery pass."""
    index = open_index(folder, manifest)
    asked = asked if asked == "auto" else choose_kind(asked, len(index.searcher))
    if asked in ("auto", index.kind):
        return index
    params = None
    if asked == "ivfpq":  # built exact: train the compressed search once and record it
        params = IvfPqParams.for_size(len(index.searcher), index.searcher.descriptors.shape[1])
        print(f"building the ivfpq search of {folder} from its stored descriptors")
        build_ivfpq(folder, params)
        write_json_atomically(folder / MANIFEST, {**manifest, "search": search_entry("ivfpq", params)})
    index.searcher = Searcher(folder, asked, params)
    return index


def usable_gallery(gallery: FileGallery, skip_bad_images: bool, workers: int) -> FileGallery:
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


@dataclass
class Match:
    rank: int
    similarity: float
    row: int
    id: str
    position: np.ndarray | None


@dataclass
class Answer:
    """One panorama's answer: the estimated position (or None), the confidence, the top-k matches, and the true
    position and error in metres when known."""

    panorama: str
    estimate: np.ndarray | None
    confidence: float
    matches: list[Match]
    truth: np.ndarray | None = None
    error_m: float | None = None


def answer(path: str, scores: np.ndarray, rows: np.ndarray, gallery: Gallery, top_k: int, method: str,
           scale_m: float) -> Answer:
    """The answer from a panorama's candidates (best first). `scale_m` is the gallery's spacing of places: votes
    count tiles within half of it, and another place lies farther than it."""
    positions = None if gallery.positions is None else np.asarray(gallery.positions[rows], np.float64)
    latlon = positions is not None and gallery.position_kind == "latlon"
    matches = [Match(rank, float(scores[rank - 1]), int(row), gallery.id(int(row)),
                     None if positions is None else positions[rank - 1])
               for rank, row in enumerate(rows[:top_k], start=1)]
    if latlon:
        estimate = estimate_position(positions, scores, method, scale_m / 2)
        confidence = place_margin(positions, scores, scale_m)
    else:  # no positions, or CVACT's UTM: the best image's own, and the margin over the second
        estimate = None if positions is None else positions[0]
        confidence = place_margin(None, scores, scale_m)
    return Answer(path, estimate, confidence, matches)


def place_scale_m(gallery: Gallery) -> float:
    """Metres between distinct places: a tile's size for an orthophoto, CVACT's 25 m otherwise."""
    grid = getattr(gallery, "grid", None)
    return grid.tile_m if grid is not None else 25.0


def read_truth(path: str, panoramas: Sequence[str]) -> dict[str, np.ndarray]:
    """The true (lat, lon) of those panoramas the CSV names (by file name without extension)."""
    found = read_positions_csv(path, "--truth")
    return {p: np.array(found[Path(p).stem]) for p in panoramas if Path(p).stem in found}


def warn_if_not_panorama(path: str, width: int, height: int, fov: float, fov_given: bool) -> None:
    """A full panorama is at least twice as wide as high (CVUSA's are cropped to about 5.5:1); a narrower image
    without --fov is probably a photo of a limited view, which a 360-degree model will not place well."""
    if fov == 360 and not fov_given and width < 1.9 * height:
        print(f"warning: {path} is {width}x{height}, narrower than 2:1: probably not a full 360-degree panorama; "
              "pass --fov DEG with a checkpoint trained for that field of view", file=sys.stderr)


def print_answer(result: Answer, gallery_size: int, position_kind: str | None) -> None:
    print(f"\n{result.panorama}: top {len(result.matches)} of {gallery_size:,} aerial images")
    matches = result.matches
    with_positions = matches[0].position is not None
    names = ("latitude", "longitude") if position_kind == "latlon" else ("easting", "northing")
    id_width = max(len("id"), *(len(m.id) for m in matches))
    header = f"  {'rank':>4}  {'similarity':>10}  {'id':<{id_width}}"
    print(header + (f"  {names[0]:>12}  {names[1]:>12}" if with_positions else ""))
    for m in matches:
        line = f"  {m.rank:>4}  {m.similarity:>10.4f}  {m.id:<{id_width}}"
        if with_positions:
            digits = 6 if position_kind == "latlon" else 2
            line += f"  {m.position[0]:>12.{digits}f}  {m.position[1]:>12.{digits}f}"
        print(line)
    if result.estimate is not None and position_kind == "latlon":
        line = f"  estimate: {result.estimate[0]:.6f}, {result.estimate[1]:.6f}"
    elif result.estimate is not None:
        line = f"  estimate: easting {result.estimate[0]:.2f}, northing {result.estimate[1]:.2f} (the best image's)"
    else:
        line = "  estimate: none (the gallery has no latitude and longitude)"
    line += f"; confidence {result.confidence:.4f}"
    if result.error_m is not None:
        line += f"; {result.error_m:.1f} m from the true position"
    print(line)


def write_answers(folder: Path, answers: Sequence[Answer], position_kind: str | None) -> list[Path]:
    """answers.json (everything), answers.csv (one line a panorama) and matches.csv (one line a match)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ("latitude", "longitude") if position_kind == "latlon" else ("easting", "northing")

    def pair(value: np.ndarray | None) -> dict[str, float | None]:
        return dict(zip(names, (None, None) if value is None else (float(value[0]), float(value[1])), strict=True))

    records = [{"panorama": a.panorama, "estimate": pair(a.estimate), "confidence": a.confidence,
                **({} if a.truth is None else {"truth": pair(a.truth), "error_m": a.error_m}),
                "matches": [{"rank": m.rank, "id": m.id, "similarity": m.similarity, **pair(m.position)}
                            for m in a.matches]} for a in answers]
    write_json_atomically(folder / "answers.json", {"position": list(names), "answers": records})
    write_text_atomically(folder / "answers.csv", _csv(
        ["panorama", *names, "confidence", "top1_id", "top1_similarity", "error_m"],
        [[a.panorama, *pair(a.estimate).values(), a.confidence, a.matches[0].id, a.matches[0].similarity,
          a.error_m] for a in answers]))
    write_text_atomically(folder / "matches.csv", _csv(
        ["panorama", "rank", "id", "similarity", *names],
        [[a.panorama, m.rank, m.id, m.similarity, *pair(m.position).values()] for a in answers for m in a.matches]))
    return [folder / name for name in ("answers.json", "answers.csv", "matches.csv")]


def _csv(header: list[str], rows: list[list]) -> str:
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return text.getvalue()


def map_layers(answers: Sequence[Answer], gallery: Gallery) -> list[MapLayer]:
    """The map's layers: each panorama's top-k footprints (a tile's own, or a point for a file), estimate, truth."""
    layers = []
    for a in answers:
        rows = [m.row for m in a.matches]
        footprints = gallery.footprints(rows)
        if footprints is None:
            footprints = np.repeat(np.stack([m.position for m in a.matches])[:, None, :], 4, axis=1)
        layers.append(MapLayer(Path(a.panorama).name, a.estimate, a.confidence, footprints,
                               [m.id for m in a.matches], [m.similarity for m in a.matches], a.truth, a.error_m))
    return layers


def coverage_figure(answers: Sequence[Answer], correct_m: float) -> Figure:
    """Accuracy (within `correct_m` metres) among the panoramas answered, against the share answered, when only
    those at or above a confidence threshold are answered."""
    known = [a for a in answers if a.error_m is not None]
    share, accuracy, thresholds = coverage_curve(np.array([a.confidence for a in known]),
                                                 np.array([a.error_m <= correct_m for a in known]))
    figure = new_figure(5.5, 4)
    axes = figure.add_subplot()
    axes.plot(np.concatenate([[0], share]) * 100, np.concatenate([[accuracy[0]], accuracy]) * 100,
              drawstyle="steps-post", color="#2b83ba", label="answering those at or above a confidence")
    for wanted in (0.1, 0.25, 0.5):  # the threshold that answers about that share
        at = min(int(np.searchsorted(share, wanted - 1e-9)), len(share) - 1)
        axes.plot(share[at] * 100, accuracy[at] * 100, "o", color="#2b83ba", markersize=4)
        axes.annotate(f"confidence \u2265 {thresholds[at]:.3f}", (share[at] * 100, accuracy[at] * 100),
                      textcoords="offset points", xytext=(6, 6), fontsize=7)
    axes.set_xlim(0, 100)
    finish_percent_axes(axes, "panoramas answered (%), the most confident first",
                        f"answered correctly, within {correct_m:g} m (%)",
                        f"accuracy against the share answered ({len(known)} panoramas)", legend="lower left")
    return figure


def matches_figure(panoramas: Sequence[tuple[str, np.ndarray]], answers: Sequence[Answer], gallery: Gallery,
                   sat_size: tuple[int, int]) -> Figure:
    """Each panorama beside its top matches (no true match is known, so every frame is grey)."""
    retrievals = [
        Retrieval(query=image, query_title=Path(path).name,
                  images=gallery.images([m.row for m in a.matches], sat_size),
                  titles=[f"rank {m.rank}  s={m.similarity:.3f}\n{m.id}" for m in a.matches],
                  is_match=[False] * len(a.matches))
        for (path, image), a in zip(panoramas, answers, strict=True)
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
    truth = read_truth(opt.truth, opt.panoramas) if opt.truth else {}
    config = index_config(opt, branches)
    listed = listed_gallery(opt)
    index = reusable_index(opt, config, listed)  # user mistakes surface here, before the network is built
    gallery = None
    if index is None:
        request = listed.describe()
        gallery = listed
        if isinstance(listed, FileGallery):
            gallery = usable_gallery(listed, opt.skip_bad_images, max(1, opt.num_workers))
    if branches is None:
        net = CrossViewNet.from_config(config_of(opt))
        load_checkpoint_weights(net, ckpt, opt.checkpoint, opt, given, stated)
        del ckpt
        branches = TorchBranches(net, device)
    if index is None:
        folder = Path(opt.index) if opt.index else temporary_folder()
        if opt.rebuild_index:
            remove_index(folder)
        index = build_index(folder, gallery, request, config, branches.embed_sat, branches.sat_size, opt.batch_size,
                            opt.num_workers, opt.index_type)
        kept = f"into {opt.index}" if opt.index else "(pass --index DIR to keep it)"
        print(f"indexed {len(index.gallery):,} aerial images of {index.gallery.source} {kept}; {index.kind} search")
    if not opt.panoramas:
        print("no panoramas given: the gallery is ready")
        return 0
    answers, panoramas = localize_all(opt, given, branches, index, truth)
    gallery = index.gallery
    for result in answers:
        print_answer(result, len(gallery), gallery.position_kind)
    errors = [a.error_m for a in answers if a.error_m is not None]
    if errors:
        print(f"\n{len(errors)} panoramas with a true position: median error {np.median(errors):.1f} m, "
              f"{np.mean(np.array(errors) <= opt.correct_m) * 100:.1f} % within {opt.correct_m:g} m")
    if opt.out:
        write_outputs(Path(opt.out), answers, index, opt.correct_m)
    if opt.figure:
        figure_path = save_figure(matches_figure(panoramas, answers, gallery, branches.sat_size), opt.figure)
        print(f"figure: {figure_path}")
    return 0


def localize_all(opt: argparse.Namespace, given: set[str], branches: Branches, index: GalleryIndex,
                 truth: dict[str, np.ndarray]) -> tuple[list[Answer], list[tuple[str, np.ndarray]]]:
    """Each panorama's answer, embedded and searched in batches; and the panoramas as read."""
    panoramas = []
    for path in opt.panoramas:
        image = read_rgb(path)
        warn_if_not_panorama(path, image.shape[1], image.shape[0], opt.fov, "fov" in given)
        panoramas.append((path, read_rgb(path, branches.grd_size)))
    gallery = index.gallery
    candidates = min(max(opt.top_k, CANDIDATES), len(gallery))
    answers = []
    for start in range(0, len(panoramas), opt.batch_size):
        batch = panoramas[start: start + opt.batch_size]
        queries = branches.embed_grd(torch.stack([to_chw_tensor(image) for _, image in batch]))
        scores, rows = index.searcher.search(queries, candidates)
        for (path, _), score, row in zip(batch, scores, rows, strict=True):
            result = answer(path, score, row, gallery, min(opt.top_k, len(gallery)), opt.estimate,
                            place_scale_m(gallery))
            if path in truth and result.estimate is not None and gallery.position_kind == "latlon":
                result.truth = truth[path]
                result.error_m = float(haversine_m(result.estimate[None], truth[path][None])[0])
            answers.append(result)
    return answers, panoramas


def write_outputs(folder: Path, answers: Sequence[Answer], index: GalleryIndex, correct_m: float) -> None:
    """The answers' files, the map where positions are latitude and longitude, the coverage curve with a truth."""
    written = write_answers(folder, answers, index.gallery.position_kind)
    gallery = index.gallery
    if gallery.position_kind == "latlon":
        backdrop = Backdrop(*overview(gallery.grid.path)) if hasattr(gallery, "grid") else None
        written.append(write_map(folder / "map.html", map_layers(answers, gallery), backdrop,
                                 f"localize.py: {len(answers)} panoramas against {gallery.source}"))
    else:
        print("no map: the gallery's positions are not latitude and longitude")
    if any(a.error_m is not None for a in answers):
        written.append(save_figure(coverage_figure(answers, correct_m), folder / "coverage.png"))
    print(f"\nwritten: {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    run_main(main, KNOWN_ERRORS)
