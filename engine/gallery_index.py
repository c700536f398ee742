"""A gallery's index folder: what `localize.py --index DIR` reads when it fits the call, and builds when not.

    DIR/index.json        the manifest: format, embedder (checkpoint or ONNX graphs), gallery, search kind;
                          written last, so a folder without it is a build in progress, never a finished index
    DIR/gallery.npz       the gallery's listing (files with their sizes and times, or the orthophoto's tile grid)
    DIR/descriptors.npy   (N, D) float16 descriptors, memory-mapped when searched
    DIR/ivfpq.faiss       the compressed index, for --index_type ivfpq

A build writes the listing, then the descriptors a batch at a time (`utils.descriptor_index.DescriptorWriter`):
a build that was killed continues from its last batch when called again with the same embedder and gallery.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.gallery import FileGallery, Gallery, OrthophotoRequest, TileGallery, file_stamps
from engine.options import UsageError
from utils.descriptor_index import (
    DESCRIPTORS,
    FAISS_FILE,
    INDEX_KINDS,
    IVFPQ_FROM,
    PARTIAL,
    PROGRESS,
    DescriptorWriter,
    GalleryIndexError,
    IvfPqParams,
    Searcher,
    build_ivfpq,
    compressible,
    default_kind,
    search_entry,
    search_params,
)
from utils.files import write_json_atomically

INDEX_FORMAT = 3  # 3: a folder (descriptors memory-mapped, a faiss index); 2 and 1 were single .npz files
MANIFEST, LISTING = "index.json", "gallery.npz"


@dataclass
class GalleryIndex:
    """A finished index: the gallery, its manifest and a searcher over its descriptors."""

    folder: Path
    gallery: Gallery
    manifest: dict[str, Any]
    searcher: Searcher

    @property
    def kind(self) -> str:
        return self.searcher.kind


def check_folder(path: Path) -> None:
    """An --index that is a file (this project's earlier .npz indices, anything else) is refused in one line."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--index {path}: a file; expected a folder (localize.py keeps an index as a folder of "
                         "files since its format 3): pass a new path, or remove this file")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a finished index in `folder`, or None when there is none yet."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {manifest.get('format')}, expected {INDEX_FORMAT}")
        return manifest
    except (OSError, ValueError) as exc:
        raise UsageError(f"--index {folder}: {MANIFEST} is not an index manifest written by localize.py ({exc}); "
                         "pass --rebuild_index to overwrite it") from None


def stale_reason(manifest: dict[str, Any], config: dict[str, Any], request: dict[str, Any] | None) -> str | None:
    """Why an index cannot serve this call (another checkpoint or graphs, configuration or gallery), or None."""
    built = manifest["config"]
    if ("onnx" in built) != ("onnx" in config):
        return f"it was built with {_embedder(built)}, this call uses {_embedder(config)}"
    for key, wanted in config.items():
        found = built.get(key)
        if found != wanted:
            if key in ("checkpoint_mtime", "onnx_mtime"):
                found, wanted = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) for t in (found, wanted))
                what = "checkpoint" if key == "checkpoint_mtime" else "ONNX graph"
                return f"the {what} was modified at {wanted}; the index holds its version of {found}"
            return f"it was built with {key} {found}, this call uses {wanted}"
    if request is not None:
        stored = manifest["gallery"]
        if request["source"] != stored["source"]:
            return f"it indexes {stored['source']}, this call asks for {request['source']}"
        for key, wanted in request.items():
            if stored.get(key) == wanted:
                continue
            if key in ("files", "file", "images"):
                return f"the images in {request['source']} changed since it was built"
            return f"it was built with {key} {stored.get(key)}, this call uses {wanted}"
    return None


def file_changes(stored: FileGallery, listed: FileGallery) -> str | None:
    """How a folder's images differ from those an index holds: other names, or files rewritten in place."""
    if listed.paths != stored.paths:
        return f"the images in {listed.source} changed since it was built"
    if not np.array_equal(listed.stamps, stored.stamps):
        changed = np.flatnonzero((listed.stamps != stored.stamps).any(axis=1))
        return (f"{len(changed)} of the images in {listed.source} were rewritten since it was built "
                f"({listed.paths[changed[0]]} first)")
    return None


def stored_files(folder: Path, manifest: dict[str, Any]) -> FileGallery | None:
    """The listing of a files index with its skipped images put back, as the folder was when it was built."""
    if manifest["gallery"].get("type") != "files":
        return None
    try:
        with np.load(folder / LISTING, allow_pickle=False) as arrays:
            gallery = FileGallery.from_arrays(arrays, manifest["gallery"]["source"], None)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    if gallery.skipped:  # their stamps were not kept: those on disk now
        stamps = dict(zip(gallery.paths, map(tuple, gallery.stamps), strict=True))
        stamps.update(zip(gallery.skipped, map(tuple, _stamps_or_zero(gallery.skipped)), strict=True))
        everything = sorted(stamps)
        return FileGallery([Path(p).stem for p in everything], everything, None, gallery.source,
                           np.array([stamps[p] for p in everything], np.int64).reshape(-1, 2))
    return gallery


def _stamps_or_zero(paths: list[str]) -> np.ndarray:
    return np.array([tuple(file_stamps([p])[0]) if os.path.exists(p) else (0, 0) for p in paths],
                    np.int64).reshape(-1, 2)


def _embedder(config: dict[str, Any]) -> str:
    return f"the ONNX graph {config['onnx']}" if "onnx" in config else f"the checkpoint {config.get('checkpoint')}"


def open_index(folder: Path, manifest: dict[str, Any]) -> GalleryIndex:
    """The finished index in `folder` whose manifest is `manifest`."""
    try:
        with np.load(folder / LISTING, allow_pickle=False) as arrays:
            kind = manifest["gallery"]["type"]
            loader = TileGallery if kind == "tiles" else FileGallery
            gallery = loader.from_arrays(arrays, manifest["gallery"]["source"], manifest["gallery"]["position_kind"])
        search = manifest["search"]
        return GalleryIndex(folder, gallery, manifest, Searcher(folder, search["kind"], search_params(search)))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, GalleryIndexError) as exc:
        raise UsageError(f"--index {folder}: cannot be read ({type(exc).__name__}: {exc}); pass --rebuild_index "
                         "to rebuild it") from None


def choose_kind(asked: str, count: int) -> str:
    """The search kind: `asked`, or for "auto" the one `default_kind` gives this gallery's size, said aloud; a
    gallery too small to compress is searched exactly."""
    if asked != "auto":
        if asked not in INDEX_KINDS:
            raise UsageError(f"--index_type {asked}: expected auto or one of {', '.join(INDEX_KINDS)}")
        if asked == "ivfpq" and not compressible(count):
            print(f"--index_type ivfpq: {count:,} aerial images are too few to compress (it takes "
                  f"{IVFPQ_FROM:,}); searching them exactly")
            return "exact"
        return asked
    kind = default_kind(count)
    print(f"--index_type auto: {kind} for {count:,} aerial images (exact up to 200,000, ivfpq above)")
    return kind


def build_index(folder: Path, gallery: Gallery | OrthophotoRequest, request: dict[str, Any], config: dict[str, Any],
                embed, sat_size: tuple[int, int], batch_size: int, workers: int, index_type: str) -> GalleryIndex:
    """Embed the gallery into `folder` (continuing a killed build of the same gallery and embedder), build its
    search structure and write the manifest last. `request` describes the gallery as listed (before unusable
    images are left out), as `stale_reason` will compare it; `embed` maps uint8 (B, 3, H, W) batches to
    descriptors."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    fingerprint = {"format": INDEX_FORMAT, "config": config, "gallery": request}
    writer_progress = _resumable(folder, fingerprint)
    if isinstance(gallery, OrthophotoRequest):
        listed = _load_listing(folder, request) if writer_progress else None
        gallery = gallery.plan() if listed is None else listed
        grid = gallery.grid
        print(f"cut {len(grid):,} tiles of {grid.tile_m:g} m every {grid.stride_m:g} m from {gallery.source} "
              f"({grid.tile_px} px each at {grid.metres_per_pixel:.3g} m/px; {grid.skipped_nodata:,} left out as "
              f"nodata{'; warped into UTM' if grid.warped else ''}; grid north {grid.convergence_deg:+.2f} deg from "
              "true north)")
    _write_listing(folder, gallery)
    writer = DescriptorWriter(folder, len(gallery), fingerprint)
    if writer.done:
        print(f"continuing the build in {folder}: {writer.done:,} of {len(gallery):,} descriptors already in")
    total, start_time = len(gallery), time.perf_counter()
    for images in gallery.batches(sat_size, batch_size, workers, start=writer.done):
        writer.append(embed(images))
        rate = (writer.done - writer_progress) / max(time.perf_counter() - start_time, 1e-9)
        print(f"\rgallery pass: {writer.done:,}/{total:,} aerial images ({rate:.0f}/s)", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    writer.finish()
    kind = choose_kind(index_type, total)
    params = None
    if kind == "ivfpq":
        dim = np.load(folder / DESCRIPTORS, mmap_mode="r").shape[1]
        params = IvfPqParams.for_size(total, dim)
        print(f"training the ivfpq index ({params.factory(dim)}, nprobe {params.nprobe}, "
              f"re-ranking {params.shortlist}) on {params.train_size:,} descriptors")
        build_ivfpq(folder, params)
    manifest = {"format": INDEX_FORMAT, "config": config,
                "gallery": {**request, "type": "tiles" if isinstance(gallery, TileGallery) else "files",
                            "position_kind": gallery.position_kind, "count": total},
                "search": search_entry(kind, params)}
    write_json_atomically(folder / MANIFEST, manifest)
    return open_index(folder, manifest)


def _resumable(folder: Path, fingerprint: dict) -> int:
    """How many descriptors a killed build of the same fingerprint left in `folder` (0: none, or another's)."""
    try:
        progress = json.loads((folder / PROGRESS).read_text())
    except (OSError, ValueError):
        return 0
    return int(progress.get("done", 0)) if progress.get("fingerprint") == fingerprint else 0


def _write_listing(folder: Path, gallery: Gallery) -> None:
    partial = folder / f".{LISTING}.{os.getpid()}.tmp.npz"
    np.savez(partial, **gallery.arrays())
    os.replace(partial, folder / LISTING)


def _load_listing(folder: Path, request: dict) -> TileGallery | None:
    """The tile grid a killed build cut, so that continuing it does not cut again."""
    try:
        with np.load(folder / LISTING, allow_pickle=False) as arrays:
            return TileGallery.from_arrays(arrays, request["source"], "latlon")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def remove_index(folder: Path) -> None:
    """Empty an index folder for --rebuild_index (only the files an index holds)."""
    for name in (MANIFEST, LISTING, DESCRIPTORS, PARTIAL, PROGRESS, FAISS_FILE):
        (folder / name).unlink(missing_ok=True)


def temporary_folder() -> Path:
    """An index folder for a call without --index, removed when the process ends."""
    import atexit
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="cvgl-index-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder
