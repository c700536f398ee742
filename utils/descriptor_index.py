"""A gallery's descriptors on disk, written resumably, and searched exactly or through a compressed faiss index.

The descriptors are one (N, D) float16 `.npy` file, memory-mapped when searched: 4 KB a 2048-value descriptor,
on disk rather than in memory. `DescriptorWriter` fills it in gallery order, a batch at a time; after each
batch the rows are flushed and `progress.json` (written whole, then renamed) says how many are done and for
which build, so a killed build continues where it stopped and never passes for a finished one: the file only
takes its final name when every row is in.

Two searches (`INDEX_KINDS`):
- `exact`: faiss's flat inner-product index over every descriptor, in memory as float32 (8 KB a tile): what
  brute force gives, the reference for the other.
- `ivfpq`: the descriptors projected by PCA to `pca_dim` values, clustered into `nlist` inverted lists and
  product-quantised to `pq_bytes` bytes each; a query visits the `nprobe` nearest lists, and the `shortlist`
  best by the compressed distance are re-ranked by their exact inner product with the stored (memory-mapped)
  descriptors. In memory: the codes, their ids and the small PCA and codebooks, about `pq_bytes + 8` bytes a
  tile. The descriptors are L2-normalised, so L2 distance orders as inner product does and PCA (a rotation
  after centring, then a cut) keeps distances approximately; the final order is always the exact one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from utils.files import write_json_atomically

INDEX_KINDS = ("exact", "ivfpq")
EXACT_UP_TO = 200_000  # the default kind: exact up to this many tiles (1.6 GB of float32 at 2048 values)
IVFPQ_FROM = 1_000  # fewer cannot train the codebooks (256 centroids each) and gain nothing from compression
DESCRIPTORS, PARTIAL, PROGRESS = "descriptors.npy", "descriptors.partial.npy", "progress.json"
FAISS_FILE = "ivfpq.faiss"


class GalleryIndexError(ValueError):
    """An index folder that cannot serve: missing, half-built or of another build."""


def _faiss():
    try:
        import faiss
    except ImportError:
        raise GalleryIndexError("the gallery index needs faiss: pip install faiss-cpu") from None
    return faiss


def compressible(count: int) -> bool:
    return count >= IVFPQ_FROM


def default_kind(count: int) -> str:
    """`exact` for galleries up to `EXACT_UP_TO` tiles, `ivfpq` above."""
    return "exact" if count <= EXACT_UP_TO else "ivfpq"


@dataclass(frozen=True)
class IvfPqParams:
    """The compressed index's settings (see the module's docstring); `for_size` chooses them by gallery size."""

    pca_dim: int
    nlist: int
    pq_bytes: int
    nprobe: int
    shortlist: int
    train_size: int

    @classmethod
    def for_size(cls, count: int, dim: int) -> IvfPqParams:
        """About 4 sqrt(N) lists (a power of two, 1,024 at 100k tiles, 4,096 at a million), trained on 40 points a
        list (at least 10,000 for the codebooks); 256 PCA values in 64 one-byte codes (4 values a code);
        128 lists visited and 256 candidates re-ranked. At a million tiles 32 lists kept 96.6 % of exact
        search's top-1, 64 kept 99.2 % and 128 99.6 %, at about the same speed; 1,024 candidates instead of
        256 changed nothing (benchmarks/README.md)."""
        nlist = 2 ** max(4, round(math.log2(max(1.0, 4 * math.sqrt(count)))))
        nlist = min(nlist, max(16, count // 40))
        pca_dim = min(256, dim)
        pq_bytes = max(1, min(64, pca_dim // 4))
        while pca_dim % pq_bytes:
            pq_bytes -= 1
        return cls(pca_dim, nlist, pq_bytes, nprobe=min(128, nlist), shortlist=256,
                   train_size=min(count, max(10_000, 40 * nlist)))

    def factory(self, dim: int) -> str:
        pca = f"PCA{self.pca_dim}," if self.pca_dim < dim else ""
        return f"{pca}IVF{self.nlist},PQ{self.pq_bytes}"


class DescriptorWriter:
    """Rows of an (N, D) float16 descriptor file, appended in order, resumable after a kill.

    `fingerprint` names the build (what the descriptors depend on); a partial file of another build is
    discarded. `done` is the number of rows already in.
    """

    def __init__(self, folder: Path, count: int, fingerprint: dict) -> None:
        self.folder, self.count, self.fingerprint = Path(folder), count, fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        self.done, self.rows = 0, None
        progress = _read_json(self.folder / PROGRESS)
        partial = self.folder / PARTIAL
        if progress.get("fingerprint") == fingerprint and progress.get("count") == count and partial.is_file():
            try:
                self.rows = np.lib.format.open_memmap(partial, mode="r+")
                self.done = int(progress["done"])
            except (OSError, ValueError):
                self.rows, self.done = None, 0

    def append(self, descriptors: np.ndarray) -> None:
        if self.rows is None:
            self.rows = np.lib.format.open_memmap(self.folder / PARTIAL, mode="w+", dtype=np.float16,
                                                  shape=(self.count, descriptors.shape[1]))
        end = self.done + len(descriptors)
        self.rows[self.done: end] = descriptors.astype(np.float16)
        self.rows.flush()
        self.done = end
        write_json_atomically(self.folder / PROGRESS, {"fingerprint": self.fingerprint, "count": self.count,
                                                       "done": self.done})

    def finish(self) -> Path:
        """Give the complete file its final name and forget the progress."""
        if self.done != self.count:
            raise RuntimeError(f"{self.done} of {self.count} descriptors written")
        self.rows.flush()
        self.rows = None
        os.replace(self.folder / PARTIAL, self.folder / DESCRIPTORS)
        (self.folder / PROGRESS).unlink(missing_ok=True)
        return self.folder / DESCRIPTORS


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def open_descriptors(folder: Path) -> np.ndarray:
    """The finished descriptors of an index folder, memory-mapped read-only."""
    return np.load(Path(folder) / DESCRIPTORS, mmap_mode="r")


def build_ivfpq(folder: Path, params: IvfPqParams, seed: int = 0) -> Path:
    """Train the compressed index on a sample of the stored descriptors, add them all, and write it beside its
    name and rename it into place."""
    faiss = _faiss()
    descriptors = open_descriptors(folder)
    count, dim = descriptors.shape
    index = faiss.index_factory(dim, params.factory(dim), faiss.METRIC_L2)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.do_polysemous_training = False  # faiss's default for IVF-PQ; a Hamming pre-filter this search does not use
    ivf.pq.cp.niter = 10  # the codebooks' k-means: 10 rounds instead of 25, for the build time
    sample = np.sort(np.random.default_rng(seed).choice(count, size=min(count, params.train_size), replace=False))
    index.train(np.ascontiguousarray(descriptors[sample], dtype=np.float32))
    for start in range(0, count, 65_536):
        index.add(np.ascontiguousarray(descriptors[start: start + 65_536], dtype=np.float32))
    path = Path(folder) / FAISS_FILE
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(partial))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


class Searcher:
    """Top-k search over an index folder's descriptors: `search(queries, k)` -> (scores, rows), best first,
    scores being exact inner products whatever the kind."""

    def __init__(self, folder: Path, kind: str, params: IvfPqParams | None = None) -> None:
        if kind not in INDEX_KINDS:
            raise GalleryIndexError(f"--index_type {kind}: expected one of {', '.join(INDEX_KINDS)}")
        faiss = _faiss()
        self.kind, self.params = kind, params
        self.descriptors = open_descriptors(folder)
        count, dim = self.descriptors.shape
        if kind == "exact":
            self.index = faiss.IndexFlatIP(dim)
            for start in range(0, count, 65_536):
                self.index.add(np.ascontiguousarray(self.descriptors[start: start + 65_536], dtype=np.float32))
        else:
            self.index = faiss.read_index(str(Path(folder) / FAISS_FILE))
            faiss.extract_index_ivf(self.index).nprobe = params.nprobe

    def __len__(self) -> int:
        return len(self.descriptors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self))
        if self.kind == "exact":
            return self.index.search(queries, k)
        _, candidates = self.index.search(queries, max(k, self.params.shortlist))
        return rerank(self.descriptors, queries, candidates, k)


def rerank(descriptors: np.ndarray, queries: np.ndarray, candidates: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best of each query's candidate rows (-1: none) by exact inner product with the stored descriptors,
    read for the union of the batch's candidates in file order."""
    wanted = np.unique(candidates[candidates >= 0])
    stored = np.asarray(descriptors[wanted], dtype=np.float32)
    position = np.searchsorted(wanted, np.maximum(candidates, 0))
    scores = np.take_along_axis(queries @ stored.T, position, 1)
    scores[candidates < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(candidates, order, 1)


def search_entry(kind: str, params: IvfPqParams | None) -> dict:
    """The search as an index manifest records it: its kind and, for ivfpq, its parameters."""
    return {"kind": kind, **({} if params is None else asdict(params))}


def search_params(entry: dict) -> IvfPqParams | None:
    """The parameters a `search_entry` records (None for exact search)."""
    return IvfPqParams(**{k: v for k, v in entry.items() if k != "kind"}) if entry["kind"] == "ivfpq" else None
