"""Recall@K for cross-view retrieval, computed the way the authors' code and VIGOR's official evaluation define it.

With distances ``d = 2 - 2 * sat @ grd.T`` (rows: aerial references, columns: ground queries), a
query is found at k when fewer than k references are strictly closer than its true match:

- p2s (ground query j against aerial references): count rows i with ``d[i, j] < d[j, j]``;
- s2p (aerial query i against ground references): count columns j with ``d[i, j] < d[i, i]``.

"r@1%" on paired data uses k = 0.01 * N as a float, as the authors' code does (250 images -> k = 2.5, so
counts 0, 1, 2 are found); against a gallery of its own (VIGOR) it uses VIGOR's official cut-off,
``int(0.01 * R) + 1``.

Ties count as found, deterministically: every similarity of a query, its positive's included, is read from
one and the same matrix product, the query's row of ``queries[chunk] @ references.T``, so an exact duplicate
of the positive is exactly as similar, never "strictly closer" by a rounding difference between two kernels.
Each direction is its own pass over chunks of queries, so memory stays O(chunk * N) and the N x N matrix is
never held. Similarities are compared rather than distances, because ``d[i, j] < d[j, j]`` is
``s[i, j] > s[j, j]`` without the rounding of ``2 - 2 * s``.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["QueryRanking", "Shard", "rank_queries", "recall_at_k", "recall_from_distances", "recall_within_distance"]

# Query rows per matrix product. Two chunk x N float32 buffers for N = 92,800 take 1.5 GB together,
# and the matrix products run as fast as with larger chunks.
DEFAULT_CHUNK_SIZE = 2048

# (first query, end) -> (query, reference) index pairs that count as a match, for the queries in [first, end).
PairFinder = Callable[[int, int], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Shard:
    """One process's share of the work: the query chunks i with i % world == rank.

    Every process holds all descriptors, computes the matrix products of its own chunks only, and the
    per-query figures of all shares (zero outside a process's own queries) are summed by `sum_across`
    (an all-reduce), so they equal those of one process while each does about 1/world of the products.
    """

    rank: int
    world: int
    sum_across: Callable[[Tensor], Tensor]

    @classmethod
    def of_process_group(cls) -> "Shard":
        """This process's share in the initialised torch.distributed group (gloo or NCCL)."""

        def all_reduce(tensor: Tensor) -> Tensor:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            return tensor

        return cls(dist.get_rank(), dist.get_world_size(), all_reduce)


def _named_ks(ks: Sequence[float] | None, one_percent: float) -> list[tuple[str, float]]:
    """Pair each k with its key; the default set names `one_percent` "r@1%" as papers do."""
    if ks is None:
        return [("r@1", 1.0), ("r@5", 5.0), ("r@10", 10.0), ("r@1%", one_percent)]
    named = []
    for k in ks:
        if not k > 0:
            raise ValueError(f"recall k must be positive, got {k!r}")
        named.append((f"r@{int(k)}" if float(k).is_integer() else f"r@{k}", float(k)))
    return named


def _recall_percent(closer: Tensor, ks: Sequence[float] | None, one_percent: float | None = None) -> dict[str, float]:
    """Percentage of queries with fewer than k references strictly closer than their match.

    `one_percent` is the k of "r@1%"; by default the authors' 0.01 * N, N the number of queries (paired data).
    """
    n = closer.numel()
    named = _named_ks(ks, 0.01 * n if one_percent is None else one_percent)
    return {name: (closer < k).sum().item() * 100.0 / n for name, k in named}


def _check_finite(*descriptors: Tensor) -> None:
    if not all(torch.isfinite(d).all() for d in descriptors):
        raise ValueError("descriptors contain NaN or inf: every comparison would be false and recall 100%")


def _check_descriptors(sat: Tensor, grd: Tensor, chunk_size: int) -> None:
    if sat.ndim != 2 or sat.shape != grd.shape or sat.shape[0] == 0:
        raise ValueError(
            f"expected aerial and ground descriptors of the same shape (N, D) with N > 0, "
            f"got {tuple(sat.shape)} and {tuple(grd.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    _check_finite(sat, grd)


@torch.no_grad()
def recall_from_distances(dists: Tensor, ks: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Recall in percent from a full (N, N) distance matrix, aerial rows x ground columns.

    The direct, obviously correct version of the metric; it holds N x N values, so it serves tests
    and small galleries.
    """
    if dists.ndim != 2 or dists.shape[0] != dists.shape[1]:
        raise ValueError(f"expected a square (N, N) distance matrix, got shape {tuple(dists.shape)}")
    positive = dists.diagonal()
    closer_p2s = (dists < positive[None, :]).sum(0)
    closer_s2p = (dists < positive[:, None]).sum(1)
    return {"p2s": _recall_percent(closer_p2s, ks), "s2p": _recall_percent(closer_s2p, ks)}


def _chunks_of(rows: int, chunk_size: int, shard: Shard | None) -> range:
    """The first rows of this process's chunks: all of them, or its share (`Shard`)."""
    starts = range(0, rows, chunk_size)
    return starts if shard is None else starts[shard.rank::shard.world]


def _as_float(*descriptors: Tensor) -> tuple[Tensor, ...]:
    """Descriptors in float32 at least, contiguous: the products' precision does not follow half-precision inputs."""
    dtype = torch.promote_types(descriptors[0].dtype, torch.float32)
    return tuple(d.to(dtype).contiguous() for d in descriptors)


@dataclass(frozen=True)
class _Counts:
    closer: Tensor
    closer_not_covering: Tensor | None
    top1: Tensor | None


def _count_closer(queries: Tensor, references: Tensor, positive_pairs: PairFinder, chunk_size: int,
                  shard: Shard | None = None, covering: Tensor | None = None, top1: bool = False) -> _Counts:
    """Per query, the number of references strictly more similar than its most similar positive reference:
    the one ranking every figure of this module comes from.

    `positive_pairs(start, stop)` gives the (query, reference) index pairs that count as matches for the queries
    in [start, stop); every query has at least one. Their similarities are read from the chunk's own product.
    With `covering` (Q, L), also the count without the references each query's row of it lists (VIGOR: the
    positive and the semi-positives); with `top1`, each query's most similar reference (the lowest index
    among equals).
    """
    queries, references = _as_float(queries, references)
    num_queries, num_refs = len(queries), len(references)
    chunk_size = min(chunk_size, num_queries)
    # Comparisons go into float 0/1 buffers: summing floats is several times faster than summing
    # booleans, and float32 counts are exact below 2**24.
    count_dtype = queries.dtype if num_refs < 2**24 else torch.float64
    closer = torch.zeros(num_queries, dtype=torch.int64, device=queries.device)
    not_covering = torch.zeros_like(closer) if covering is not None else None
    most_similar = torch.zeros_like(closer) if top1 else None
    block_buffer = torch.empty(chunk_size, num_refs, dtype=queries.dtype, device=queries.device)
    for start in _chunks_of(num_queries, chunk_size, shard):
        stop = min(start + chunk_size, num_queries)
        block = torch.mm(queries[start:stop], references.T, out=block_buffer[: stop - start])
        if most_similar is not None:
            most_similar[start:stop] = block.argmax(1)  # the first of equal maxima
        rows, cols = (index.to(block.device) for index in positive_pairs(start, stop))
        best = torch.full((stop - start,), float("-inf"), dtype=block.dtype, device=block.device)
        best.scatter_reduce_(0, rows - start, block[rows - start, cols], "amax")
        is_closer = torch.gt(block, best[:, None], out=block)
        closer[start:stop] = is_closer.sum(1, dtype=count_dtype).to(torch.int64)
        if not_covering is not None:
            is_closer.scatter_(1, covering[start:stop], 0.0)
            not_covering[start:stop] = is_closer.sum(1, dtype=count_dtype).to(torch.int64)
    counts = (closer, not_covering, most_similar)
    if shard is not None:
        counts = tuple(None if t is None else shard.sum_across(t) for t in counts)
    return _Counts(*counts)


def _diagonal_pairs(start: int, stop: int) -> tuple[Tensor, Tensor]:
    index = torch.arange(start, stop)
    return index, index


@torch.no_grad()
def recall_at_k(
    sat: Tensor,
    grd: Tensor,
    ks: Sequence[float] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    shard: Shard | None = None,
) -> dict[str, dict[str, float]]:
    """Recall in percent of paired descriptors (row i of `sat` matches row i of `grd`), both directions.

    Returns ``{"p2s": {"r@1": .., "r@5": .., "r@10": .., "r@1%": ..}, "s2p": {...}}`` for the default
    ks, or keys ``f"r@{k}"`` for the given ones. Works in chunks of `chunk_size` queries on the descriptors'
    device, in float32 at least, without ever holding the N x N matrix. With `shard`, this process computes
    its share of the chunks and the counts are summed across processes (`Shard`).
    """
    _check_descriptors(sat, grd, chunk_size)
    closer_p2s = _count_closer(grd, sat, _diagonal_pairs, chunk_size, shard).closer
    closer_s2p = _count_closer(sat, grd, _diagonal_pairs, chunk_size, shard).closer
    return {"p2s": _recall_percent(closer_p2s, ks), "s2p": _recall_percent(closer_s2p, ks)}


def _radius_pair_finder(utm: Tensor, radius: float, max_candidates: int = 2**22) -> PairFinder:
    """Pairs of images at most `radius` apart, found among neighbours in easting order.

    Sorting by easting keeps the work proportional to the number of candidates in a narrow easting
    window instead of N x N; queries go in batches of about `max_candidates` candidates, so images
    lined up along a north-south street cannot blow up the temporaries.
    """
    order = torch.argsort(utm[:, 0])
    sorted_easting = utm[order, 0].contiguous()
    # A little wider than the radius so rounding in easting +- radius never drops a neighbour.
    window = radius * 1.01 + 1e-6

    def close_candidates(queries: Tensor, first: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        rows = torch.repeat_interleave(queries, counts)
        offsets = torch.repeat_interleave(first - (counts.cumsum(0) - counts), counts)
        cols = order[offsets + torch.arange(rows.numel(), device=utm.device)]
        offset = utm[rows] - utm[cols]
        close = torch.hypot(offset[:, 0], offset[:, 1]) <= radius
        return rows[close], cols[close]

    def pairs(start: int, stop: int) -> tuple[Tensor, Tensor]:
        easting = utm[start:stop, 0]
        first = torch.searchsorted(sorted_easting, easting - window)
        counts = torch.searchsorted(sorted_easting, easting + window, right=True) - first
        cumulative = counts.cumsum(0)
        thresholds = list(range(max_candidates, int(cumulative[-1]), max_candidates))
        splits = torch.searchsorted(cumulative, torch.tensor(thresholds, dtype=cumulative.dtype, device=utm.device))
        queries = torch.arange(start, stop, device=utm.device)
        batches = zip(*(part.tensor_split(splits.tolist()) for part in (queries, first, counts)), strict=True)
        found = [close_candidates(*batch) for batch in batches]
        return torch.cat([rows for rows, _ in found]), torch.cat([cols for _, cols in found])

    return pairs


@torch.no_grad()
def recall_within_distance(
    sat: Tensor,
    grd: Tensor,
    utm: Tensor,
    ks: Sequence[float] | None = None,
    radius: float = 5.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    shard: Shard | None = None,
) -> dict[str, dict[str, float]]:
    """Recall in percent where any reference within `radius` metres of the query counts as a match.

    CVACT's test split is densely sampled, so a neighbouring image a few metres away shows the same
    place. `utm` is (N, 2) easting/northing in metres for the pairs. A query is found at k when fewer
    than k references are strictly more similar than its most similar reference within `radius`
    (distance <= radius), consistent with `recall_at_k`, which this equals when no two positions are
    within `radius` of each other. Same keys, chunking, memory and sharding as `recall_at_k`.
    """
    _check_descriptors(sat, grd, chunk_size)
    if utm.shape != (sat.shape[0], 2):
        raise ValueError(f"expected utm of shape ({sat.shape[0]}, 2), got {tuple(utm.shape)}")
    if not torch.isfinite(utm).all():
        raise ValueError("utm positions contain NaN or inf")
    if not radius >= 0:
        raise ValueError(f"radius must be a non-negative number of metres, got {radius!r}")
    utm = utm.to(device=sat.device, dtype=torch.float64)
    pairs = _radius_pair_finder(utm, radius)  # symmetric: the same pairs serve both directions
    closer_p2s = _count_closer(grd, sat, pairs, chunk_size, shard).closer
    closer_s2p = _count_closer(sat, grd, pairs, chunk_size, shard).closer
    return {"p2s": _recall_percent(closer_p2s, ks), "s2p": _recall_percent(closer_s2p, ks)}


@dataclass(frozen=True)
class QueryRanking:
    """Where each of Q ground queries found its aerial references among R, and the figures from it.

    `closer[q]`: references strictly more similar than the query's positive; `closer_not_covering[q]`: those of
    them that do not cover the query (neither its positive nor a semi-positive); `top1[q]`: the most similar
    reference (the lowest index among equals).
    """

    closer: Tensor
    closer_not_covering: Tensor
    top1: Tensor
    num_references: int

    def recall(self, ks: Sequence[float] | None = None) -> dict[str, float]:
        """Recall in percent (positive only). "r@1%" is VIGOR's official cut-off: found when fewer than
        ``int(0.01 * R) + 1`` references are strictly more similar, R the gallery's size."""
        return _recall_percent(self.closer, ks, one_percent=int(self.num_references * 0.01) + 1)

    @property
    def hit_rate(self) -> float:
        """VIGOR's official hit rate in percent: queries for which no reference that does not cover them is
        strictly more similar than their positive."""
        return (self.closer_not_covering == 0).sum().item() * 100.0 / self.closer_not_covering.numel()


@torch.no_grad()
def rank_queries(
    sat: Tensor,
    grd: Tensor,
    positive: Tensor,
    semi_positives: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    shard: Shard | None = None,
) -> QueryRanking:
    """Rank R aerial references `sat` (R, D) for Q ground queries `grd` (Q, D) whose positives are `positive` (Q,).

    The gallery need not be one-to-one with the queries (VIGOR): queries may share a positive and references
    may be nobody's. `semi_positives` (Q, S) are references that also cover the query's place; they count for
    the hit rate, not for recall. The same ranking as `recall_at_k`'s, whose p2s counts this equals on paired
    data (positive = arange(N)), with each query's own positive in place of the diagonal.
    """
    if sat.ndim != 2 or grd.ndim != 2 or sat.shape[1] != grd.shape[1] or 0 in (len(sat), len(grd)):
        raise ValueError(f"expected aerial (R, D) and ground (Q, D) descriptors with R, Q > 0, got "
                         f"{tuple(sat.shape)} and {tuple(grd.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    num_refs, num_queries = len(sat), len(grd)
    positive = positive.to(device=sat.device, dtype=torch.int64).reshape(-1)
    if positive.numel() != num_queries:
        raise ValueError(f"expected one positive per query ({num_queries}), got {positive.numel()}")
    if semi_positives is None:
        semi_positives = positive.new_empty((num_queries, 0))
    labels = torch.cat([positive[:, None], semi_positives.to(positive).reshape(num_queries, -1)], dim=1)
    if labels.min() < 0 or labels.max() >= num_refs:
        raise ValueError(f"positive and semi-positive indices must lie in 0..{num_refs - 1}")
    _check_finite(sat, grd)

    def positive_pairs(first: int, end: int) -> tuple[Tensor, Tensor]:
        return torch.arange(first, end, device=positive.device), positive[first:end]

    counts = _count_closer(grd, sat, positive_pairs, chunk_size, shard, covering=labels, top1=True)
    return QueryRanking(counts.closer, counts.closer_not_covering, counts.top1, num_refs)
