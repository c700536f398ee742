"""Recall@K checked against the authors' figures and against slow, obviously correct loops."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.distributed import run_in_processes, sharded_ranking, sharded_recall
from tests.helpers import FIXTURES
from utils.evaluation import OwnPair, PositiveTile, evaluate
from utils.recall import (
    Positives,
    _radius_pair_finder,
    rank,
    recall_at_k,
    recall_from_distances,
    recall_within_distance,
)

listed = Positives.of_indices


def load_fixture(name: str) -> Path:
    return FIXTURES / name


def tied_descriptors(n: int, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Small integers / 8: every product and sum is exact in float32, and similarities tie often."""
    generator = torch.Generator().manual_seed(seed)
    sat = torch.randint(-2, 3, (n, dim), generator=generator).float() / 8
    grd = sat + torch.randint(-1, 2, (n, dim), generator=generator).float() / 8
    return sat, grd


def brute_force_closer(dists: np.ndarray) -> tuple[list[int], list[int]]:
    """Per query, the references strictly closer than its match, counted one by one."""
    n = len(dists)
    p2s = [sum(dists[i, j] < dists[j, j] for i in range(n)) for j in range(n)]
    s2p = [sum(dists[i, j] < dists[i, i] for j in range(n)) for i in range(n)]
    return p2s, s2p


def brute_force_within(sims: np.ndarray, utm: np.ndarray, radius: float) -> tuple[list[int], list[int]]:
    """Per query, the references strictly more similar than its most similar reference within radius."""
    n = len(sims)
    near = [[math.hypot(*(utm[i] - utm[j])) <= radius for j in range(n)] for i in range(n)]
    p2s, s2p = [], []
    for q in range(n):
        best = max(sims[i, q] for i in range(n) if near[i][q])
        p2s.append(sum(sims[i, q] > best for i in range(n)))
        best = max(sims[q, j] for j in range(n) if near[q][j])
        s2p.append(sum(sims[q, j] > best for j in range(n)))
    return p2s, s2p


def percent(closer: list[int], ks: list[float]) -> dict[str, float]:
    return {f"r@{int(k)}" if float(k).is_integer() else f"r@{k}": 100 * np.mean(np.array(closer) < k) for k in ks}


def assert_recall_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for direction in actual:
        assert actual[direction] == pytest.approx(expected[direction], abs=1e-9), direction


def test_reproduces_reference_recall_of_the_authors_code():
    dists = torch.from_numpy(np.load(load_fixture("reference_loss_recall.npz"))["dists"])
    reference = json.loads(load_fixture("reference_loss_recall.json").read_text())["recall_p2s_s2p"]
    recall = recall_from_distances(dists, ks=[1, 5, 10, 2.5])
    for k, (p2s, s2p) in reference.items():
        key = "r@" + k
        assert recall["p2s"][key] == pytest.approx(p2s, abs=1e-5), key
        assert recall["s2p"][key] == pytest.approx(s2p, abs=1e-5), key


def test_default_ks_use_one_percent_of_the_gallery_unrounded():
    dists = torch.from_numpy(np.load(load_fixture("reference_loss_recall.npz"))["dists"])
    default = recall_from_distances(dists)
    assert list(default["p2s"]) == ["r@1", "r@5", "r@10", "r@1%"]
    assert default["p2s"]["r@1%"] == recall_from_distances(dists, ks=[2.5])["p2s"]["r@2.5"]
    # Counts 0, 1 and 2 are found at k = 2.5, count 3 is not.
    closer = torch.tensor([0, 1, 2, 3] + [5] * 246)
    dists = torch.ones(250, 250)
    dists[closer.unsqueeze(0) > torch.arange(250).unsqueeze(1)] = 0.0  # column j: closer[j] rows at 0
    dists.fill_diagonal_(0.5)
    assert recall_from_distances(dists)["p2s"]["r@1%"] == pytest.approx(100 * 3 / 250)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_matrix_recall_equals_brute_force_loop(seed):
    sat, grd = tied_descriptors(40, seed=seed)
    dists = 2 - 2 * sat @ grd.T
    ks = [1, 2, 2.5, 5, 10, 0.4]
    p2s, s2p = brute_force_closer(dists.numpy())
    assert_recall_equal(recall_from_distances(dists, ks), {"p2s": percent(p2s, ks), "s2p": percent(s2p, ks)})


@pytest.mark.parametrize("chunk_size", [1, 7, 32, 97, 200])
def test_chunked_recall_equals_full_matrix_recall_with_ties(chunk_size):
    sat, grd = tied_descriptors(97)
    ks = list(range(1, 99))  # every k: the whole distribution of counts must agree
    expected = recall_from_distances(2 - 2 * sat @ grd.T, ks)
    assert_recall_equal(recall_at_k(sat, grd, ks, chunk_size=chunk_size), expected)


def test_default_keys_and_identical_descriptors_count_ties_as_found():
    sat = torch.ones(50, 4) / 2
    recall = recall_at_k(sat, sat.clone())
    assert recall == {direction: {"r@1": 100.0, "r@5": 100.0, "r@10": 100.0, "r@1%": 100.0} for direction in recall}
    assert list(recall) == ["p2s", "s2p"]


def noisy_view(descriptors: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The other view of normalised descriptors: the same plus noise of norm about 0.3, normalised."""
    noise = torch.randn(descriptors.shape, generator=generator) * 0.3 / descriptors.shape[1] ** 0.5
    return torch.nn.functional.normalize(descriptors + noise, dim=1)


def duplicated_descriptors(n: int, dim: int = 2048, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs of normalised descriptors at the model's size, each pair twice in a row: rows 2i and 2i + 1 are
    exact duplicates in both views, as two identical images at one place give."""
    generator = torch.Generator().manual_seed(seed)
    sat = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    grd = noisy_view(sat, generator)
    return sat.repeat_interleave(2, dim=0), grd.repeat_interleave(2, dim=0)


@pytest.mark.parametrize("chunk_size", [2048, 7, 1])
def test_exact_duplicates_of_the_true_match_at_2048_values_tie_and_count_as_found(chunk_size):
    sat, grd = duplicated_descriptors(150)
    expected = {"r@1": 100.0, "r@5": 100.0, "r@10": 100.0, "r@1%": 100.0}
    assert recall_at_k(sat, grd, chunk_size=chunk_size) == {"p2s": expected, "s2p": expected}
    utm = torch.arange(300, dtype=torch.float64).div(2, rounding_mode="floor")[:, None] * torch.tensor([100.0, 0.0])
    assert recall_within_distance(sat, grd, utm, radius=5.0, chunk_size=chunk_size) == {"p2s": expected,
                                                                                       "s2p": expected}


def test_cvact_test_one_to_one_counts_only_the_own_image_of_two_panoramas_at_the_same_position():
    # Panoramas 0 and 1 stand at exactly the same position. Their aerial images are exact duplicates, so each
    # ties with the other's and both are found. Panoramas 2 and 3 share a position too, but aerial image 3 is
    # more like ground 2 than aerial 2 is: one-to-one, ground 2 is not found at 1; within 5 m it is.
    generator = torch.Generator().manual_seed(9)
    sat = torch.nn.functional.normalize(torch.randn(40, 2048, generator=generator), dim=1)
    sat[1] = sat[0]
    grd = noisy_view(sat, generator)
    grd[2] = torch.nn.functional.normalize(0.6 * sat[2] + sat[3], dim=0)
    utm = torch.arange(40, dtype=torch.float64)[:, None] * torch.tensor([30.0, 0.0])
    utm[1], utm[3] = utm[0], utm[2]
    closer = [sum((sat[i] @ grd[q]).item() > (sat[q] @ grd[q]).item() for i in range(40)) for q in range(40)]
    assert closer[2] >= 1 and all(count == 0 for q, count in enumerate(closer) if q != 2)
    assert recall_at_k(sat, grd, ks=[1])["p2s"]["r@1"] == pytest.approx(100 * 39 / 40)
    assert recall_within_distance(sat, grd, utm, ks=[1], radius=5.0)["p2s"]["r@1"] == 100.0


def test_exact_duplicates_in_a_gallery_tie_with_the_positive_for_recall_and_hit_rate():
    # Every positive tile has an exact duplicate elsewhere in the gallery, which covers nobody.
    generator = torch.Generator().manual_seed(3)
    tiles = torch.nn.functional.normalize(torch.randn(120, 2048, generator=generator), dim=1)
    sat = torch.cat([tiles, tiles[:60]])
    positive = torch.arange(60).repeat(2)  # two queries a positive
    grd = noisy_view(sat[positive], generator)
    for chunk_size in (2048, 7):
        ranking = rank(grd, sat, Positives.of_indices(positive), chunk_size=chunk_size)
        assert ranking.closer.tolist() == [0] * 120 and ranking.hit_rate == 100.0
        assert ranking.recall() == {"r@1": 100.0, "r@5": 100.0, "r@10": 100.0, "r@1%": 100.0}


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_exact_duplicates_tie_on_any_number_of_processes(world, tmp_path):
    sat, grd = duplicated_descriptors(40, seed=world)
    utm = torch.arange(80, dtype=torch.float64).div(2, rounding_mode="floor")[:, None] * torch.tensor([100.0, 0.0])
    expected = {"r@1": 100.0, "r@5": 100.0, "r@10": 100.0, "r@1%": 100.0}
    for result in run_in_processes(sharded_recall, world, tmp_path, sat, grd, utm, 5.0):
        assert result == {kind: {"p2s": expected, "s2p": expected} for kind in ("paired", "radius")}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs_give_the_same_recall(dtype):
    sat, grd = tied_descriptors(60, seed=3)
    ks = list(range(1, 62))
    assert_recall_equal(recall_at_k(sat.to(dtype), grd.to(dtype), ks, chunk_size=16), recall_at_k(sat, grd, ks))


def test_normalised_random_descriptors_match_full_matrix():
    generator = torch.Generator().manual_seed(5)
    sat = torch.nn.functional.normalize(torch.randn(300, 32, generator=generator), dim=1)
    grd = torch.nn.functional.normalize(sat + torch.randn(300, 32, generator=generator), dim=1)
    ks = [1, 5, 10, 3]
    assert_recall_equal(recall_at_k(sat, grd, ks, chunk_size=64), recall_from_distances(-(sat @ grd.T), ks))


@pytest.mark.parametrize(("radius", "chunk_size"), [(0.0, 13), (3.0, 1), (3.0, 13), (8.0, 64), (8.0, 100)])
def test_recall_within_distance_equals_brute_force_loop(radius, chunk_size):
    sat, grd = tied_descriptors(64, seed=6)
    generator = torch.Generator().manual_seed(6)
    utm = torch.rand(64, 2, dtype=torch.float64, generator=generator) * 40 + torch.tensor([3e5, 6e6])
    utm[10] = utm[11]  # two images taken at the same spot
    ks = list(range(1, 66))
    p2s, s2p = brute_force_within((sat @ grd.T).numpy(), utm.numpy(), radius)
    expected = {"p2s": percent(p2s, ks), "s2p": percent(s2p, ks)}
    assert_recall_equal(recall_within_distance(sat, grd, utm, ks, radius=radius, chunk_size=chunk_size), expected)


def test_a_nearby_wrong_reference_counts_as_found():
    # Ground query 0's own aerial image ranks last (third); aerial 1, 3 m away, ranks first and aerial 2,
    # 8 m away, second. Queries 1 and 2 find their own images first.
    sat = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    grd = torch.tensor([[1.0, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    utm = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 8.0]], dtype=torch.float64)
    assert recall_at_k(sat, grd, ks=[1, 2])["p2s"] == pytest.approx({"r@1": 100 * 2 / 3, "r@2": 100 * 2 / 3})
    within = recall_within_distance(sat, grd, utm, ks=[1, 2], radius=5.0)
    assert within["p2s"] == pytest.approx({"r@1": 100.0, "r@2": 100.0})
    assert recall_within_distance(sat, grd, utm, ks=[1], radius=2.0)["p2s"]["r@1"] == pytest.approx(100 * 2 / 3)


@pytest.mark.slow
@pytest.mark.parametrize("max_candidates", [1, 7, 100, 2**22])
def test_pairs_within_radius_along_a_north_south_street_match_all_pairs(max_candidates):
    # Eastings within 3 m of each other: every image is a candidate of every other, so the search batches.
    generator = torch.Generator().manual_seed(8)
    utm = torch.rand(300, 2, dtype=torch.float64, generator=generator) * torch.tensor([3.0, 200.0])
    find_pairs = _radius_pair_finder(utm, radius=5.0, max_candidates=max_candidates)
    found = [torch.stack(find_pairs(start, min(start + 64, 300)), dim=1) for start in range(0, 300, 64)]
    pairs = sorted(map(tuple, torch.cat(found).tolist()))
    distances = torch.cdist(utm, utm, compute_mode="donot_use_mm_for_euclid_dist")
    assert pairs == sorted(map(tuple, (distances <= 5.0).nonzero().tolist()))


def test_recall_within_tiny_radius_equals_recall_at_k():
    sat, grd = tied_descriptors(80, seed=7)
    utm = torch.rand(80, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) * 1000
    min_distance = torch.pdist(utm).min().item()
    assert recall_within_distance(sat, grd, utm, radius=min_distance / 2, chunk_size=9) == recall_at_k(sat, grd)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: recall_at_k(torch.zeros(3, 4), torch.zeros(4, 4)), "same shape"),
        (lambda: recall_at_k(torch.zeros(3, 4), torch.zeros(3, 4), chunk_size=0), "chunk_size"),
        (lambda: recall_at_k(torch.zeros(3, 4), torch.zeros(3, 4), ks=[0]), "positive"),
        (lambda: recall_at_k(torch.full((3, 4), float("nan")), torch.zeros(3, 4)), "NaN"),
        (lambda: recall_within_distance(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, 2)), "utm"),
        (lambda: recall_within_distance(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 2), radius=-1), "radius"),
        (lambda: recall_from_distances(torch.zeros(3, 4)), "square"),
    ],
)
def test_mistakes_raise_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3])
def test_sharded_recall_over_processes_equals_one_process(world, tmp_path):
    generator = torch.Generator().manual_seed(world)
    n = 53  # 8 chunks of 7 rows, 4 in the last: no world size divides them evenly
    sat = torch.nn.functional.normalize(torch.randn(n, 16, generator=generator), dim=1)
    grd = torch.nn.functional.normalize(sat + 0.8 * torch.randn(n, 16, generator=generator), dim=1)
    utm = torch.cumsum(torch.rand(n, 2, generator=generator, dtype=torch.float64) * 20, dim=0)  # some within 30 m
    expected = {"paired": recall_at_k(sat, grd), "radius": recall_within_distance(sat, grd, utm, radius=30.0)}
    assert expected["paired"] != expected["radius"]
    assert run_in_processes(sharded_recall, world, tmp_path, sat, grd, utm, 30.0) == [expected] * world


# ------------------------------------------------------------------ queries against a gallery of their own (VIGOR)


def gallery_case(num_refs: int, num_queries: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Tied descriptors, queries sharing positives, some references nobody's, three semi-positives each."""
    generator = torch.Generator().manual_seed(seed)
    sat = torch.randint(-2, 3, (num_refs, 8), generator=generator).float() / 8
    positive = torch.randint(0, num_refs // 2, (num_queries,), generator=generator)  # the upper half: nobody's
    grd = sat[positive] + torch.randint(-1, 2, (num_queries, 8), generator=generator).float() / 8
    semi = torch.stack([(positive + step) % num_refs for step in (1, 2, num_refs // 2)], dim=1)
    return sat, grd, positive, semi


def vigor_validate_top(grd: np.ndarray, sat: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """VIGOR's official evaluation (`validate_top` of its train_overall.py), written out query by query:
    distances 2 - 2 * grd @ sat.T, a query's rank among all tiles, and its hit when no tile outside its
    semi-positives is strictly closer than its positive."""
    dist_array = 2 - 2 * grd @ sat.T
    top1_percent = int(dist_array.shape[1] * 0.01) + 1
    found = {"r@1": 0, "r@5": 0, "r@1%": 0, "hit": 0}
    for i in range(dist_array.shape[0]):
        gt_dist = dist_array[i, labels[i][0]]
        prediction = np.sum(dist_array[i, :] < gt_dist)
        dist_temp = np.ones(dist_array[i, :].shape[0])
        dist_temp[labels[i][1:]] = 0
        prediction_hit = np.sum((dist_array[i, :] < gt_dist) * dist_temp)
        found["r@1%"] += prediction < top1_percent
        found["r@1"] += prediction < 1
        found["r@5"] += prediction < 5
        found["hit"] += prediction_hit < 1
    return {key: 100.0 * value / dist_array.shape[0] for key, value in found.items()}


def brute_force_ranking(sims: np.ndarray, positive: np.ndarray, semi: np.ndarray) -> tuple[list, list, list]:
    """Per query (row of sims): references strictly above the positive, those of them outside the positive and
    semi-positives, and the first most similar reference, each counted one reference at a time."""
    closer, closer_not_covering, top1 = [], [], []
    for q, row in enumerate(sims):
        labelled = [int(positive[q]), *map(int, semi[q])]
        above = [r for r in range(len(row)) if row[r] > row[positive[q]]]
        closer.append(len(above))
        closer_not_covering.append(len([r for r in above if r not in labelled]))
        first = 0
        for r in range(len(row)):
            if row[r] > row[first]:
                first = r
        top1.append(first)
    return closer, closer_not_covering, top1


@pytest.mark.parametrize(("num_refs", "num_queries", "chunk_size", "seed"),
                         [(30, 45, 1, 0), (30, 45, 7, 1), (61, 20, 16, 2), (40, 40, 100, 3), (200, 90, 32, 4)])
def test_ranking_of_queries_equals_brute_force_loops_with_ties_and_shared_positives(num_refs, num_queries,
                                                                                    chunk_size, seed):
    sat, grd, positive, semi = gallery_case(num_refs, num_queries, seed)
    assert len(set(positive.tolist())) < num_queries  # queries share positives
    closer, closer_not_covering, top1 = brute_force_ranking((grd @ sat.T).numpy(), positive.numpy(), semi.numpy())
    ranking = rank(grd, sat, Positives.of_indices(positive, semi), chunk_size=chunk_size, top1=True)
    assert ranking.closer.tolist() == closer
    assert ranking.closer_not_covering.tolist() == closer_not_covering
    assert ranking.top1.tolist() == top1
    ks = [1, 2, 5, 10]
    assert ranking.recall(ks) == pytest.approx(percent(closer, ks))
    assert ranking.hit_rate >= ranking.recall([1])["r@1"]


@pytest.mark.parametrize(("num_refs", "num_queries", "seed"), [(30, 45, 0), (100, 60, 1), (200, 90, 2), (257, 80, 3)])
def test_recall_and_hit_rate_equal_vigors_official_evaluation(num_refs, num_queries, seed):
    sat, grd, positive, semi = gallery_case(num_refs, num_queries, seed)
    labels = torch.cat([positive[:, None], semi], dim=1).numpy()
    official = vigor_validate_top(grd.numpy(), sat.numpy(), labels)
    figures = evaluate({"grd": grd, "positive": positive, "semi_positives": semi}, {"sat": sat}, PositiveTile()).figures
    recall = figures["p2s"]
    assert recall["r@1"] == pytest.approx(official["r@1"]) and recall["r@5"] == pytest.approx(official["r@5"])
    assert recall["r@1%"] == pytest.approx(official["r@1%"])
    assert figures["hit_rate"] == pytest.approx(official["hit"])


def test_one_percent_of_a_gallery_of_exactly_100_tiles_allows_one_closer_tile_as_vigors_code_does():
    # VIGOR's cut-off is int(0.01 * R) + 1: with R = 100 a query with one closer tile is found at 1%
    # (TransGeo and Sample4Geo count R // 100 = 1 position, which would not find it).
    sat = torch.eye(100)
    grd = torch.zeros(3, 100)
    grd[0, 0] = 1.0  # positive 0 first
    grd[1, :2] = torch.tensor([0.5, 1.0])  # positive 0 second, behind tile 1
    grd[2, :3] = torch.tensor([0.5, 1.0, 1.0])  # positive 0 third
    ranking = rank(grd, sat, Positives.of_indices(torch.zeros(3, dtype=torch.int64)))
    assert ranking.closer.tolist() == [0, 1, 2]
    assert ranking.recall(one_percent=PositiveTile().one_percent_k(100))["r@1%"] == pytest.approx(200 / 3)
    assert ranking.recall(one_percent=OwnPair().one_percent_k(100))["r@1%"] == pytest.approx(100 / 3)  # authors' k = 1


def test_a_semi_positive_on_top_is_a_hit_only_when_no_other_tile_lies_between_it_and_the_positive():
    sat = torch.eye(5)
    # query 0: semi-positive 1 first, positive 0 second: a hit. Query 1: semi-positive 1 first, then tile 4
    # (it does not cover the query), then the positive 0: no hit, though its top-1 tile covers it.
    grd = torch.tensor([[0.5, 1.0, 0.0, 0.0, 0.0], [0.2, 1.0, 0.0, 0.0, 0.6]])
    ranking = rank(grd, sat, Positives.of_indices(torch.tensor([0, 0]), torch.tensor([[1, 2], [1, 2]])), top1=True)
    assert ranking.closer.tolist() == [1, 2] and ranking.top1.tolist() == [1, 1]
    assert ranking.closer_not_covering.tolist() == [0, 1]
    assert ranking.recall([1])["r@1"] == 0.0 and ranking.hit_rate == 50.0
    without_semi_positives = rank(grd, sat, Positives.of_indices(torch.tensor([0, 0])))
    assert without_semi_positives.hit_rate == 0.0  # recall@1


@pytest.mark.parametrize("chunk_size", [1, 7, 97])
def test_ranking_of_paired_queries_equals_recall_at_k(chunk_size):
    sat, grd = tied_descriptors(97, seed=4)
    ks = list(range(1, 99))
    ranking = rank(grd, sat, Positives.of_indices(torch.arange(97)), chunk_size=chunk_size)
    assert ranking.recall(ks) == recall_at_k(sat, grd, ks, chunk_size=chunk_size)["p2s"]
    assert ranking.recall() == recall_at_k(sat, grd)["p2s"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rank(torch.zeros(2, 5), torch.zeros(3, 4), listed(torch.zeros(2))), "descriptors"),
        (lambda: rank(torch.zeros(2, 4), torch.zeros(3, 4), listed(torch.zeros(3))), "one positive per query"),
        (lambda: rank(torch.zeros(2, 4), torch.zeros(3, 4), listed(torch.tensor([0, 3]))), "0..2"),
        (lambda: rank(torch.zeros(2, 4), torch.zeros(3, 4), listed(torch.zeros(2), torch.tensor([[1], [-1]]))), "0..2"),
        (lambda: rank(torch.zeros(2, 4), torch.zeros(3, 4), listed(torch.zeros(2)), chunk_size=0), "chunk_size"),
        (lambda: rank(torch.zeros(2, 4), torch.full((3, 4), float("nan")), listed(torch.zeros(2))), "NaN"),
        (lambda: Positives.within(torch.zeros(3, 3), 5.0), "positions of shape"),
        (lambda: Positives.within(torch.full((3, 2), float("inf")), 5.0), "NaN or inf"),
    ],
)
def test_ranking_mistakes_raise_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_ranking_over_processes_equals_one_process(world, tmp_path):
    sat, grd, positive, semi = gallery_case(33, 26, seed=world)  # 6 chunks of 5 queries, 1 in the last
    one = rank(grd, sat, Positives.of_indices(positive, semi), chunk_size=5, top1=True)
    expected = {"closer": one.closer, "closer_not_covering": one.closer_not_covering, "top1": one.top1}
    for result in run_in_processes(sharded_ranking, world, tmp_path, sat, grd, positive, semi):
        assert {key: value.tolist() for key, value in result.items()} == \
            {key: value.tolist() for key, value in expected.items()}
