"""Recall@K for cross-view retrieval, computed the way the authors' code defines it.

With distances ``d = 2 - 2 * sat @ grd.T`` (rows: aerial references, columns: ground queries), a
query is found at k when fewer than k references are strictly closer than its true match:

- p2s (ground query j against aerial references): count rows i with ``d[i, j] < d[j, j]``;
- s2p (aerial query i against ground references): count columns j with ``d[i, j] < d[i, i]``.

"r@1%" uses k = 0.01 * N as a float, not rounded (250 images -> k = 2.5, so counts 0, 1, 2 are found).

`recall_from_distances` is the plain version on a full matrix. `recall_at_k` and
`recall_within_distance` never build the N x N matrix: they walk over chunks of aerial rows, and one
matrix product per chunk serves both directions, so memory stays O(N * chunk) and the time stays close
to that of a single N x N x D matrix product. They compare similarities instead of distances, because
``d[i, j] < d[j, j]`` is ``s[i, j] > s[j, j]`` without the rounding of ``2 - 2 * s``.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["QueryRanking", "Shard", "rank_queries", "recall_at_k", "recall_from_distances", "recall_within_distance"]

# Aerial rows per matrix product. Two chunk x N float32 buffers for N = 92,800 take 1.5 GB together,
# and the matrix products run as fast as with larger chunks.
DEFAULT_CHUNK_SIZE = 2048

PairFinder = Callable[[int, int], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Shard:
    """One process's share of the work: the aerial-row chunks i with i % world == rank.

    Every process holds all descriptors, computes the matrix products of its own chunks only, and the
    per-query counts of all shares are summed by `sum_across` (an all-reduce), so the figures equal those
    of one process while each does about 1/world of the products.
    """

    rank: int
    world: int
    sum_across: Callable[[Tensor], Tensor]
    max_across: Callable[[Tensor], Tensor] | None = None

    @classmethod
    def of_process_group(cls) -> "Shard":
        """This process's share in the initialised torch.distributed group (gloo or NCCL)."""

        def all_reduce(op: dist.ReduceOp) -> Callable[[Tensor], Tensor]:
            def reduce(tensor: Tensor) -> Tensor:
                dist.all_reduce(tensor, op=op)
                return tensor

            return reduce

        return cls(dist.get_rank(), dist.get_world_size(), all_reduce(dist.ReduceOp.SUM), all_reduce(dist.ReduceOp.MAX))


def _named_ks(ks: Sequence[float] | None, num_queries: int) -> list[tuple[str, float]]:
    """Pair each k with its key; the default set names 0.01 * N "r@1%" as papers do."""
    if ks is None:
        return [("r@1", 1.0), ("r@5", 5.0), ("r@10", 10.0), ("r@1%", 0.01 * num_queries)]
    named = []
    for k in ks:
        if not k > 0:
            raise ValueError(f"recall k must be positive, got {k!r}")
        named.append((f"r@{int(k)}" if float(k).is_integer() else f"r@{k}", float(k)))
    return named


def _recall_percent(closer: Tensor, ks: Sequence[float] | None) -> dict[str, float]:
    """Percentage of queries with fewer than k references strictly closer than their match."""
    n = closer.numel()
    return {name: (closer < k).sum().item() * 100.0 / n for name, k in _named_ks(ks, n)}


def _check_descriptors(sat: Tensor, grd: Tensor, chunk_size: int) -> None:
    if sat.ndim != 2 or sat.shape != grd.shape or sat.shape[0] == 0:
        raise ValueError(
            f"expected aerial and ground descriptors of the same shape (N, D) with N > 0, "
            f"got {tuple(sat.shape)} and {tuple(grd.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")


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


def _count_closer(
    sat: Tensor, grd: Tensor, positive_pairs: PairFinder, chunk_size: int, shard: Shard | None = None
) -> tuple[Tensor, Tensor]:
    """Per query, the number of references strictly more similar than its best positive reference.

    `positive_pairs(start, stop)` gives the (aerial row, ground column) index pairs that count as
    true matches for aerial rows in [start, stop). Their similarities come from row-wise dot
    products; in the matrix products those entries are masked, so each query compares the other
    references against one value, as if the matrix held the dot products at the positive entries.
    """
    dtype = torch.promote_types(sat.dtype, torch.float32)
    sat = sat.to(dtype).contiguous()
    grd = grd.to(dtype).contiguous()
    n, dim = sat.shape
    chunk_size = min(chunk_size, n)
    pair_batch = max(1, chunk_size * n // (2 * dim))  # gathered pairs take no more memory than a block

    best_p2s = torch.full((n,), float("-inf"), dtype=dtype, device=sat.device)
    best_s2p = torch.full((n,), float("-inf"), dtype=dtype, device=sat.device)
    for start in range(0, n, chunk_size):
        rows, cols = positive_pairs(start, min(start + chunk_size, n))
        for batch_rows, batch_cols in zip(rows.split(pair_batch), cols.split(pair_batch), strict=True):
            sims = torch.einsum("pd,pd->p", sat[batch_rows], grd[batch_cols])
            best_p2s.scatter_reduce_(0, batch_cols, sims, "amax")
            best_s2p.scatter_reduce_(0, batch_rows, sims, "amax")
    if not (torch.isfinite(best_p2s).all() and torch.isfinite(best_s2p).all()):
        raise ValueError("descriptors contain NaN or inf: every comparison would be false and recall 100%")

    # Comparisons go into float 0/1 buffers: summing floats is several times faster than summing
    # booleans, and float32 counts are exact below 2**24.
    count_dtype = dtype if n < 2**24 else torch.float64
    closer_p2s = torch.zeros(n, dtype=torch.int64, device=sat.device)
    closer_s2p = torch.zeros(n, dtype=torch.int64, device=sat.device)
    block_buffer = torch.empty(chunk_size, n, dtype=dtype, device=sat.device)
    closer_buffer = torch.empty(chunk_size, n, dtype=dtype, device=sat.device)
    for start in _chunks_of(n, chunk_size, shard):
        stop = min(start + chunk_size, n)
        block = torch.mm(sat[start:stop], grd.T, out=block_buffer[: stop - start])
        rows, cols = positive_pairs(start, stop)
        block[rows - start, cols] = float("-inf")
        closer = torch.gt(block, best_s2p[start:stop, None], out=closer_buffer[: stop - start])
        closer_s2p[start:stop] = closer.sum(1, dtype=count_dtype).to(torch.int64)
        closer = torch.gt(block, best_p2s[None, :], out=block)  # the block's last use
        closer_p2s += closer.sum(0, dtype=count_dtype).to(torch.int64)
    if shard is not None:
        closer_p2s, closer_s2p = shard.sum_across(closer_p2s), shard.sum_across(closer_s2p)
    return closer_p2s, closer_s2p


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
    ks, or keys ``f"r@{k}"`` for the given ones. Works in chunks of `chunk_size` aerial rows on the
    descriptors' device, in float32 at least, without ever holding the N x N matrix. With `shard`, this
    process computes its share of the chunks and the counts are summed across processes (`Shard`).
    """
    _check_descriptors(sat, grd, chunk_size)

    def diagonal_pairs(start: int, stop: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(start, stop, device=sat.device)
        return index, index

    closer_p2s, closer_s2p = _count_closer(sat, grd, diagonal_pairs, chunk_size, shard)
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
    closer_p2s, closer_s2p = _count_closer(sat, grd, _radius_pair_finder(utm, radius), chunk_size, shard)
    return {"p2s": _recall_percent(closer_p2s, ks), "s2p": _recall_percent(closer_s2p, ks)}


@dataclass(frozen=True)
class QueryRanking:
    """Where each of Q ground queries found its aerial references among R, and the figures from it.

    `closer[q]`: references strictly more similar than the query's positive; `closer_than_any[q]`: references
    outside its positive and semi-positives strictly more similar than the best of those; `top1[q]`: the most
    similar reference (the lowest index among equals).
    """

    closer: Tensor
    closer_than_any: Tensor
    top1: Tensor
    num_references: int

    def recall(self, ks: Sequence[float] | None = None) -> dict[str, float]:
        """Recall in percent (positive only); "r@1%" uses k = 0.01 * R, the gallery's size."""
        n = self.closer.numel()
        return {name: (self.closer < k).sum().item() * 100.0 / n for name, k in _named_ks(ks, self.num_references)}

    @property
    def hit_rate(self) -> float:
        """Percent of queries whose top-1 is their positive or one of their semi-positives (ties count as found)."""
        return (self.closer_than_any == 0).sum().item() * 100.0 / self.closer_than_any.numel()


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
    may be nobody's. `semi_positives` (Q, S) are references that also show the query's place; they count for
    the hit rate, not for recall. Walks over chunks of reference rows like `recall_at_k`, whose p2s figures
    this equals on paired data (positive = arange(N)): the same blocks, the same comparisons.
    """
    if sat.ndim != 2 or grd.ndim != 2 or sat.shape[1] != grd.shape[1] or 0 in (len(sat), len(grd)):
        raise ValueError(f"expected aerial (R, D) and ground (Q, D) descriptors with R, Q > 0, got "
                         f"{tuple(sat.shape)} and {tuple(grd.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    num_refs, num_queries = len(sat), len(grd)
    positive = positive.to(device=sat.device, dtype=torch.int64).reshape(-1)
    if semi_positives is None:
        semi_positives = positive.new_empty((num_queries, 0))
    semi_positives = semi_positives.to(device=sat.device, dtype=torch.int64).reshape(num_queries, -1)
    if positive.numel() != num_queries:
        raise ValueError(f"expected one positive per query ({num_queries}), got {positive.numel()}")
    labels = torch.cat([positive[:, None], semi_positives], dim=1)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_refs):
        raise ValueError(f"positive and semi-positive indices must lie in 0..{num_refs - 1}")
    dtype = torch.promote_types(sat.dtype, torch.float32)
    sat = sat.to(dtype).contiguous()
    grd = grd.to(dtype).contiguous()
    chunk_size = min(chunk_size, num_refs)

    best = torch.einsum("qd,qd->q", grd, sat[positive])
    semi_similarities = [torch.einsum("qd,qd->q", grd, sat[column]) for column in semi_positives.T]
    best_of_set = torch.stack([best, *semi_similarities]).amax(0)
    if not (torch.isfinite(best).all() and torch.isfinite(best_of_set).all()):
        raise ValueError("descriptors contain NaN or inf: every comparison would be false and recall 100%")
    by_reference = [torch.argsort(labels[:, k], stable=True) for k in range(labels.shape[1])]
    sorted_labels = [labels[order, k] for k, order in enumerate(by_reference)]

    def labelled(start: int, stop: int, columns: range) -> tuple[Tensor, Tensor]:
        """(reference row, query) of the label columns `columns` whose reference lies in [start, stop)."""
        rows, cols = [positive[:0]], [positive[:0]]
        for k in columns:
            first, last = torch.searchsorted(sorted_labels[k], torch.tensor([start, stop], device=sat.device)).tolist()
            cols.append(by_reference[k][first:last])
            rows.append(sorted_labels[k][first:last])
        return torch.cat(rows), torch.cat(cols)

    count_dtype = dtype if num_refs < 2**24 else torch.float64
    closer = torch.zeros(num_queries, dtype=torch.int64, device=sat.device)
    closer_than_any = torch.zeros(num_queries, dtype=torch.int64, device=sat.device)
    top_value = torch.full((num_queries,), float("-inf"), dtype=dtype, device=sat.device)
    top1 = torch.zeros(num_queries, dtype=torch.int64, device=sat.device)
    block_buffer = torch.empty(chunk_size, num_queries, dtype=dtype, device=sat.device)
    closer_buffer = torch.empty(chunk_size, num_queries, dtype=dtype, device=sat.device)
    for start in _chunks_of(num_refs, chunk_size, shard):
        stop = min(start + chunk_size, num_refs)
        block = torch.mm(sat[start:stop], grd.T, out=block_buffer[: stop - start])
        value, row = block.max(0)  # the first of equal maxima; chunks come in order, so a later one must be larger
        better = value > top_value
        top_value = torch.where(better, value, top_value)
        top1 = torch.where(better, row + start, top1)
        rows, cols = labelled(start, stop, range(1))
        block[rows - start, cols] = float("-inf")
        closer += torch.gt(block, best[None, :], out=closer_buffer[: stop - start]).sum(0, dtype=count_dtype).long()
        rows, cols = labelled(start, stop, range(1, labels.shape[1]))
        block[rows - start, cols] = float("-inf")
        closer_than_any += torch.gt(block, best_of_set[None, :], out=block).sum(0, dtype=count_dtype).long()
    if shard is not None:
        closer, closer_than_any = shard.sum_across(closer), shard.sum_across(closer_than_any)
        if shard.max_across is None:
            raise ValueError("a sharded ranking needs Shard.max_across to merge the shards' top-1 references")
        best_value = shard.max_across(top_value.clone())
        candidate = torch.where(top_value == best_value, top1, torch.full_like(top1, num_refs))
        top1 = -shard.max_across(-candidate)  # the lowest index among the shards' equal maxima
    return QueryRanking(closer, closer_than_any, top1, num_refs)
