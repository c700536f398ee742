"""The one evaluation path: each protocol's figures against slow, obviously correct computations."""

import numpy as np
import pytest
import torch

from tests.utils.test_recall import (
    brute_force_closer,
    brute_force_within,
    gallery_case,
    percent,
    tied_descriptors,
    vigor_validate_top,
)
from utils.evaluation import OwnPair, PositiveTile, WithinRadius, evaluate
from utils.recall import Positives, rank

DEFAULT_KS = ("r@1", "r@5", "r@10", "r@1%")


def named(figures: dict[str, float]) -> dict[str, float]:
    return dict(zip(DEFAULT_KS, figures.values(), strict=True))


def assert_figures(actual: dict, p2s: list[int], s2p: list[int], ks: list[float]) -> None:
    assert list(actual) == ["p2s", "s2p"]
    assert actual["p2s"] == pytest.approx(named(percent(p2s, ks)))
    assert actual["s2p"] == pytest.approx(named(percent(s2p, ks)))


@pytest.mark.parametrize("num", [97, 250, 301])
def test_pairs_are_a_gallery_whose_matches_are_the_diagonal_in_both_directions(num):
    sat, grd = tied_descriptors(num, seed=num)
    p2s, s2p = brute_force_closer((2 - 2 * sat @ grd.T).numpy())
    ks = [1, 5, 10, 0.01 * num]  # the authors' r@1%: 0.01 * N, unrounded
    pairs = {"sat": sat, "grd": grd}
    evaluation = evaluate(pairs, pairs, OwnPair())
    assert_figures(evaluation.figures, p2s, s2p, ks)
    assert evaluation.rankings["p2s"].closer.tolist() == p2s and evaluation.rankings["s2p"].closer.tolist() == s2p
    assert evaluation.errors_m is None and torch.equal(evaluation.descriptors["sat"], sat)


def test_within_a_radius_any_reference_near_the_query_counts_in_both_directions():
    sat, grd = tied_descriptors(64, seed=6)
    generator = torch.Generator().manual_seed(6)
    utm = torch.rand(64, 2, dtype=torch.float64, generator=generator) * 40 + torch.tensor([3e5, 6e6])
    p2s, s2p = brute_force_within((sat @ grd.T).numpy(), utm.numpy(), 8.0)
    pairs = {"sat": sat, "grd": grd, "utm": utm}
    evaluation = evaluate(pairs, pairs, WithinRadius(8.0))
    assert_figures(evaluation.figures, p2s, s2p, [1, 5, 10, 0.64])
    assert WithinRadius(8.0).label_keys == ("utm",) and WithinRadius(8.0).name == "within 8 m"


@pytest.mark.parametrize(("num_refs", "num_queries", "seed"), [(30, 45, 0), (257, 80, 3)])
def test_a_gallery_of_its_own_gives_vigors_recall_hit_rate_and_the_top_tiles_error(num_refs, num_queries, seed):
    sat, grd, positive, semi = gallery_case(num_refs, num_queries, seed)
    generator = torch.Generator().manual_seed(seed)
    tile_latlon = torch.rand(num_refs, 2, dtype=torch.float64, generator=generator) * 0.01 + torch.tensor([41.8, -87.6])
    query_latlon = tile_latlon[positive] + 1e-5
    evaluation = evaluate({"grd": grd, "positive": positive, "semi_positives": semi, "latlon": query_latlon},
                          {"sat": sat, "latlon": tile_latlon}, PositiveTile())
    official = vigor_validate_top(grd.numpy(), sat.numpy(), torch.cat([positive[:, None], semi], 1).numpy())
    assert list(evaluation.figures) == ["p2s", "hit_rate", "localization"]
    assert evaluation.figures["p2s"] == pytest.approx({name: official[name] for name in ("r@1", "r@5", "r@1%")}
                                                      | {"r@10": evaluation.figures["p2s"]["r@10"]})
    assert evaluation.figures["hit_rate"] == pytest.approx(official["hit"])
    similarities = (grd @ sat.T).numpy()
    top1 = [int(np.flatnonzero(row == row.max())[0]) for row in similarities]
    lat, lon = np.radians(tile_latlon[top1].numpy()).T
    query_lat, query_lon = np.radians(query_latlon.numpy()).T
    by_hand = [6_371_008.8 * 2 * np.arcsin(np.sqrt(np.sin((b - a) / 2) ** 2 + np.cos(a) * np.cos(b)
                                                    * np.sin((d - c) / 2) ** 2))
               for a, b, c, d in zip(lat, query_lat, lon, query_lon, strict=True)]
    assert evaluation.errors_m == pytest.approx(by_hand, rel=1e-3)
    assert evaluation.figures["localization"]["median_m"] == pytest.approx(np.median(by_hand), rel=1e-3)


def test_without_positions_a_gallery_reports_no_error_and_covers_nothing_extra():
    sat, grd, positive, _ = gallery_case(30, 20, 1)
    evaluation = evaluate({"grd": grd, "positive": positive}, {"sat": sat}, PositiveTile())
    assert evaluation.errors_m is None and "localization" not in evaluation.figures
    assert evaluation.figures["hit_rate"] == evaluation.figures["p2s"]["r@1"]  # nothing but the positive covers


def test_every_protocol_ranks_with_the_one_ranking_function():
    sat, grd = tied_descriptors(40, seed=2)
    pairs = {"sat": sat, "grd": grd}
    by_rank = rank(grd, sat, Positives.of_indices(torch.arange(40)))
    for matching in (OwnPair(), PositiveTile()):
        queries = {**pairs, "positive": torch.arange(40)}
        assert torch.equal(evaluate(queries, pairs, matching).rankings["p2s"].closer, by_rank.closer)
