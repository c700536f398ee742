"""Recall@K for cross-view retrieval, computed the way the authors' code and VIGOR's official evaluation define it.

One ranking serves every figure: `rank` counts, for each query, the references strictly more similar than its
most similar match, where `Positives` says which references match (paired data: the diagonal; CVACT's test
split: any within a radius; VIGOR: a listed tile, with semi-positives for the hit rate). With distances
``d = 2 - 2 * sat @ grd.T`` (rows: aerial references, columns: ground queries) on paired data this is

- p2s (ground query j against aerial references): count rows i with ``d[i, j] < d[j, j]``;
- s2p (aerial query i against ground references): count columns j with ``d[i, j] < d[i, i]``,

and a query is found at k when that count is below k. `recall_at_k` and `recall_within_distance` are both
directions of paired data in one call.

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

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Positives", "Ranking", "Shard", "rank", "recall_at_k", "recall_from_distances", "recall_within_distance"]

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
    def of_process_group(cls) -> Shard:
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


@dataclass(frozen=True)
class Positives:
    """Which references count as each query's match: the one description of a protocol's ground truth.

    `pairs(start, stop)` gives the (query, reference) index pairs that match, for the queries in
    [start, stop); every query has at least one, and a query is found at k when fewer than k references are
    strictly more similar than its most similar match. `covering` (Q, L), where given, lists per query the
    references that also show its place (VIGOR: the positive and the semi-positives): those do not spoil a
    hit (`Ranking.hit_rate`). `listed` keeps the indices to check against the gallery's size.
    """

    pairs: PairFinder
    covering: Tensor | None = None
    listed: Tensor | None = None

    @classmethod
    def own_pairs(cls) -> Positives:
        """Paired data: query i matches reference i, and only it (the authors' protocol)."""

        def diagonal(start: int, stop: int) -> tuple[Tensor, Tensor]:
            index = torch.arange(start, stop)
            return index, index

        return cls(diagonal)

    @classmethod
    def within(cls, positions: Tensor, radius: float) -> Positives:
        """Paired data whose pair i was taken at `positions[i]` (N, 2, metres): every reference within
        `radius` metres (distance <= radius) of the query's position matches (CVACT's test split)."""
        if positions.ndim != 2 or positions.shape[1] != 2:
            raise ValueError(f"expected positions of shape (N, 2), got {tuple(positions.shape)}")
        if not torch.isfinite(positions).all():
            raise ValueError("positions contain NaN or inf")
        if not radius >= 0:
            raise ValueError(f"radius must be a non-negative number of metres, got {radius!r}")
        return cls(_radius_pair_finder(positions.to(torch.float64), radius))

    @classmethod
    def of_indices(cls, positive: Tensor, semi_positives: Tensor | None = None) -> Positives:
        """A gallery of its own (VIGOR): query q matches reference `positive[q]`; `semi_positives` (Q, S) also
        cover its place and count for the hit rate, not for recall."""
        positive = positive.to(torch.int64).reshape(-1)
        if semi_positives is None:
            semi_positives = positive.new_empty((len(positive), 0))
        covering = torch.cat([positive[:, None], semi_positives.to(positive).reshape(len(positive), -1)], dim=1)

        def listed_pairs(start: int, stop: int) -> tuple[Tensor, Tensor]:
            return torch.arange(start, stop, device=positive.device), positive[start:stop]

        return cls(listed_pairs, covering=covering, listed=covering)

    def of_query(self, query: int) -> Tensor:
        """The references that match `query`."""
        return self.pairs(query, query + 1)[1]

    def covering_query(self, query: int) -> Tensor:
        """The references that show `query`'s place: its `covering` row, or else its matches."""
        return self.of_query(query) if self.covering is None else self.covering[query]

    def check(self, num_queries: int, num_references: int) -> None:
        if self.listed is None:
            return
        if len(self.listed) != num_queries:
            raise ValueError(f"expected one positive per query ({num_queries}), got {len(self.listed)}")
        if self.listed.numel() and (self.listed.min() < 0 or self.listed.max() >= num_references):
            raise ValueError(f"positive and semi-positive indices must lie in 0..{num_references - 1}")


@dataclass(frozen=True)
class Ranking:
    """Where each of Q queries found its matches among R references, and the figures from it.

    `closer[q]`: references strictly more similar than the query's most similar match; `closer_not_covering[q]`
    (with `Positives.covering`): those of them that do not show the query's place; `top1[q]` (when asked for):
    the most similar reference, the lowest index among equals.
    """

    closer: Tensor
    num_references: int
    closer_not_covering: Tensor | None = None
    top1: Tensor | None = None

    def recall(self, ks: Sequence[float] | None = None, one_percent: float | None = None) -> dict[str, float]:
        """Recall in percent: found at k when fewer than k references are strictly more similar than the match.

        `one_percent` is the k of "r@1%" among the default ks; by default the authors' 0.01 * R as a float.
        """
        return _recall_percent(self.closer, ks, 0.01 * self.num_references if one_percent is None else one_percent)

    @property
    def hit_rate(self) -> float:
        """VIGOR's official hit rate in percent: queries for which no reference that does not show their place
        is strictly more similar than their match (without `covering`: recall@1)."""
        closer = self.closer if self.closer_not_covering is None else self.closer_not_covering
        return (closer == 0).sum().item() * 100.0 / closer.numel()


@torch.no_grad()
def rank(
    queries: Tensor,
    references: Tensor,
    positives: Positives,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    shard: Shard | None = None,
    top1: bool = False,
) -> Ranking:
    """Rank R `references` (R, D) for Q `queries` (Q, D) whose matches `positives` names: every figure's ranking.

    Paired data is a gallery whose positives are the diagonal (`Positives.own_pairs`); its other direction is
    the same call with the roles swapped. Works in chunks of `chunk_size` queries on the descriptors' device, in
    float32 at least, without holding the Q x R matrix; with `shard`, this process ranks its share of the
    chunks and the counts are summed across processes. `top1` also keeps each query's most similar reference.
    """
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1] \
            or 0 in (len(queries), len(references)):
        raise ValueError(f"expected query (Q, D) and reference (R, D) descriptors with Q, R > 0, got "
                         f"{tuple(queries.shape)} and {tuple(references.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    positives.check(len(queries), len(references))
    _check_finite(queries, references)
    covering = None if positives.covering is None else positives.covering.to(queries.device)
    counts = _count_closer(queries, references, positives.pairs, chunk_size, shard, covering, top1)
    return Ranking(counts.closer, len(references), counts.closer_not_covering, counts.top1)


def _check_paired(sat: Tensor, grd: Tensor) -> None:
    if sat.ndim != 2 or sat.shape != grd.shape or sat.shape[0] == 0:
        raise ValueError(
            f"expected aerial and ground descriptors of the same shape (N, D) with N > 0, "
            f"got {tuple(sat.shape)} and {tuple(grd.shape)}"
        )


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
    ks, or keys ``f"r@{k}"`` for the given ones: `rank` in each direction with `Positives.own_pairs`.
    """
    _check_paired(sat, grd)
    return _both_directions(sat, grd, Positives.own_pairs(), ks, chunk_size, shard)


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
    place. `utm` is (N, 2) easting/northing in metres for the pairs (`Positives.within`); this equals
    `recall_at_k` when no two positions are within `radius` of each other. Same keys as `recall_at_k`.
    """
    _check_paired(sat, grd)
    if utm.shape != (sat.shape[0], 2):
        raise ValueError(f"expected utm of shape ({sat.shape[0]}, 2), got {tuple(utm.shape)}")
    positives = Positives.within(utm.to(sat.device), radius)  # symmetric: the same pairs serve both directions
    return _both_directions(sat, grd, positives, ks, chunk_size, shard)


def _both_directions(sat: Tensor, grd: Tensor, positives: Positives, ks: Sequence[float] | None, chunk_size: int,
                     shard: Shard | None) -> dict[str, dict[str, float]]:
    return {"p2s": rank(grd, sat, positives, chunk_size, shard).recall(ks),
            "s2p": rank(sat, grd, positives, chunk_size, shard).recall(ks)}


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
