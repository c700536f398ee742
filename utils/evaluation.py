"""One evaluation path: descriptors and a protocol in, rankings and figures out, for paired data and galleries alike.

Paired data is a gallery whose matches are the diagonal, so CVUSA, CVACT (one-to-one or within a radius) and
VIGOR (queries against a gallery of their own) all go through `evaluate`: one `utils.recall.rank` per direction,
the figures read off those rankings. A protocol (`Matching`) says which references match a query, from the
labels evaluation keeps of its batches; a data module picks one per stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from torch import Tensor

from utils.geo import haversine_m, localization_summary
from utils.recall import Positives, Ranking, Shard, rank

ONE_TO_ONE = "one-to-one"
POSITIVE_TILE = "positive tile (semi-positives count for the hit rate)"


class Matching(Protocol):
    """Which references count as a query's match, and how its figures are reported."""

    @property
    def name(self) -> str:
        """The protocol as results.json and results.csv name it."""

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The labels evaluation keeps of each batch for `positives` (and positions, for the error in metres)."""

    @property
    def both_directions(self) -> bool:
        """Paired data: aerial -> ground is reported too."""

    @property
    def radius_m(self) -> float | None:
        """Metres within which a reference counts, where the protocol has a radius."""

    @property
    def location_key(self) -> str | None:
        """The label holding latitude and longitude, where the top-1 reference's error in metres is reported."""

    def positives(self, queries: Mapping[str, Tensor], references: Mapping[str, Tensor]) -> Positives: ...

    def one_percent_k(self, num_references: int) -> float:
        """The k of "r@1%"."""


@dataclass(frozen=True)
class OwnPair:
    """Paired data, one-to-one: only the query's own aerial image counts (the authors' protocol)."""

    name: str = ONE_TO_ONE
    label_keys: tuple[str, ...] = ()
    both_directions: bool = True
    radius_m: float | None = None
    location_key: str | None = None

    def positives(self, queries: Mapping[str, Tensor], references: Mapping[str, Tensor]) -> Positives:
        return Positives.own_pairs()

    def one_percent_k(self, num_references: int) -> float:
        """The authors' 0.01 * N, a float: 250 images give k = 2.5, so 0, 1 or 2 closer images are found."""
        return 0.01 * num_references


@dataclass(frozen=True)
class WithinRadius:
    """Paired data taken at positions `key` (metres, (N, 2)): any reference within `radius_m` of the query's
    position counts (CVACT's test split, 5 m by the dataset authors' rule)."""

    radius_m: float = 5.0
    key: str = "utm"
    both_directions: bool = True
    location_key: str | None = None

    @property
    def name(self) -> str:
        return f"within {self.radius_m:g} m"

    @property
    def label_keys(self) -> tuple[str, ...]:
        return (self.key,)

    def positives(self, queries: Mapping[str, Tensor], references: Mapping[str, Tensor]) -> Positives:
        return Positives.within(queries[self.key], self.radius_m)

    def one_percent_k(self, num_references: int) -> float:
        return 0.01 * num_references


@dataclass(frozen=True)
class PositiveTile:
    """Queries against a gallery of their own (VIGOR): each query's `positive` tile counts; the tiles in
    `semi_positives` also show its place and count for the hit rate; `latlon` gives the top-1 tile's error."""

    name: str = POSITIVE_TILE
    positive_key: str = "positive"
    covering_key: str = "semi_positives"
    location_key: str | None = "latlon"
    both_directions: bool = False
    radius_m: float | None = None

    @property
    def label_keys(self) -> tuple[str, ...]:
        return tuple(key for key in (self.positive_key, self.covering_key, self.location_key) if key)

    def positives(self, queries: Mapping[str, Tensor], references: Mapping[str, Tensor]) -> Positives:
        return Positives.of_indices(queries[self.positive_key], queries.get(self.covering_key))

    def one_percent_k(self, num_references: int) -> float:
        """VIGOR's official cut-off, ``int(0.01 * R) + 1`` references."""
        return int(0.01 * num_references) + 1


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation gave: its figures (recall by direction; with covering tiles the hit rate; with
    positions the top-1 error), the descriptors in dataset order ("sat": references, "grd": queries), the
    ranking of each direction, the protocol's matches, and the top-1 reference's error in metres per query."""

    figures: dict[str, Any]
    descriptors: dict[str, Tensor]
    rankings: dict[str, Ranking]
    positives: Positives
    matching: Matching
    errors_m: np.ndarray | None = None


def evaluate(queries: Mapping[str, Tensor], references: Mapping[str, Tensor], matching: Matching,
             shard: Shard | None = None) -> Evaluation:
    """Rank `references["sat"]` for `queries["grd"]` (and the other way on paired data) by `matching`.

    On paired data `queries` and `references` are the same pairs. With `shard`, each process ranks its share.
    """
    positives = matching.positives(queries, references)
    key = matching.location_key
    locate = key is not None and key in queries and key in references
    sat, grd = references["sat"], queries["grd"]
    rankings = {"p2s": rank(grd, sat, positives, shard=shard, top1=locate)}
    if matching.both_directions:
        rankings["s2p"] = rank(sat, grd, positives, shard=shard)
    figures: dict[str, Any] = {
        direction: ranking.recall(one_percent=matching.one_percent_k(ranking.num_references))
        for direction, ranking in rankings.items()
    }
    if positives.covering is not None:
        figures["hit_rate"] = rankings["p2s"].hit_rate
    errors_m = None
    if locate:
        top1 = rankings["p2s"].top1.cpu()
        errors_m = haversine_m(references[key].cpu()[top1].numpy(), queries[key].cpu().numpy())
        figures["localization"] = localization_summary(errors_m)
    return Evaluation(figures, {"sat": sat.cpu(), "grd": grd.cpu()}, rankings, positives, matching, errors_m)
