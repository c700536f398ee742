import json
import math

import numpy as np
import pytest
import torch

from dataset.negatives import WithinDistance, covering_pairs
from model.loss import (
    LOSSES,
    SoftMarginTripletLoss,
    SymmetricInfoNCELoss,
    build_loss,
    hard_topk_ratio_for_epoch,
    soft_margin_triplet_loss,
)
from tests.distributed import global_negatives_loss, run_in_processes


def slow_loss(sat, grd, weight, ratio, utm=None, min_distance=25.0, covers=None):
    """One triplet at a time, as the paper defines it, with close CVACT pairs and (VIGOR) tiles that cover a
    panorama left out: `covers(i, j)` says whether the aerial tile of pair i covers the panorama of pair j."""
    n = len(sat)
    means = []
    for aerial_query in (True, False):
        terms = []
        for i in range(n):
            for j in range(n):
                if i == j or (utm is not None and math.dist(utm[i].tolist(), utm[j].tolist()) < min_distance):
                    continue
                if covers is not None and covers(i, j):
                    continue
                q, r = (i, j) if aerial_query else (j, i)
                d_pos = 2 - 2 * float(sat[q] @ grd[q])
                d_neg = 2 - 2 * float(sat[q] @ grd[r]) if aerial_query else 2 - 2 * float(sat[r] @ grd[q])
                terms.append(math.log1p(math.exp(weight * (d_pos - d_neg))))
        kept = min(max(int(ratio * n * (n - 1)), 1), len(terms))
        means.append(sum(sorted(terms, reverse=True)[:kept]) / kept)
    return sum(means) / 2


def within_25m(utm):
    return WithinDistance(25.0)({"utm": utm})


def random_descriptors(n, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sat = torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    grd = torch.nn.functional.normalize(sat + 0.8 * torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    return sat, grd


@pytest.fixture(scope="module")
def reference(reference_dir):
    arrays = np.load(reference_dir / "reference_loss_recall.npz")
    figures = json.loads((reference_dir / "reference_loss_recall.json").read_text())
    return {k: torch.from_numpy(arrays[k]) for k in ("sat", "pano", "utm")}, figures


@pytest.mark.parametrize("ratio", ["1.0", "0.1", "0.05", "0.01"])
def test_reproduces_the_reference_loss(reference, ratio):
    arrays, figures = reference
    loss = soft_margin_triplet_loss(arrays["sat"], arrays["pano"], figures["loss_weight"], float(ratio))
    assert loss.item() == pytest.approx(figures["losses"][ratio], abs=1e-5)


def test_reproduces_the_reference_cvact_loss_with_all_pairs_far(reference):
    arrays, figures = reference
    loss = soft_margin_triplet_loss(arrays["sat"], arrays["pano"], 10, 1.0, not_negatives=within_25m(arrays["utm"]))
    assert loss.item() == pytest.approx(figures["losses"]["cvact_far_1.0"], abs=1e-5)


@pytest.mark.parametrize("ratio", [1.0, 0.3, 0.1, 0.01])
def test_matches_the_slow_loss(ratio):
    sat, grd = random_descriptors(9)
    assert soft_margin_triplet_loss(sat, grd, 10, ratio).item() == pytest.approx(slow_loss(sat, grd, 10, ratio))


def test_cvact_loss_with_all_pairs_far_equals_the_plain_loss():
    sat, grd = random_descriptors(8, seed=1)
    utm = torch.arange(8, dtype=torch.float64)[:, None] * torch.tensor([[100.0, 30.0]]) + 5e5
    for ratio in (1.0, 0.1):
        plain = soft_margin_triplet_loss(sat, grd, 10, ratio)
        torch.testing.assert_close(soft_margin_triplet_loss(sat, grd, 10, ratio, not_negatives=within_25m(utm)), plain)


@pytest.mark.parametrize("ratio", [1.0, 0.2])
def test_close_cvact_pairs_change_neither_sum_nor_count(ratio):
    sat, grd = random_descriptors(8, seed=2)
    utm = torch.arange(8, dtype=torch.float64)[:, None] * torch.tensor([[100.0, 0.0]]) + torch.tensor([3e5, 6.1e6])
    utm[1] = utm[0] + torch.tensor([10.0, 10.0])  # 14 m apart: no negatives of each other
    utm[5] = utm[4] + torch.tensor([0.0, 24.9])
    loss = soft_margin_triplet_loss(sat, grd, 10, ratio, not_negatives=within_25m(utm))
    assert loss.item() == pytest.approx(slow_loss(sat, grd, 10, ratio, utm=utm))
    moved = grd.clone()
    moved[1] = sat[0]  # item 1 now looks exactly like item 0's aerial image, 14 m away: no penalty for it
    with_close_pair_changed = soft_margin_triplet_loss(sat, moved, 10, 1.0, not_negatives=within_25m(utm))
    assert with_close_pair_changed.item() == pytest.approx(slow_loss(sat, moved, 10, 1.0, utm=utm))


def test_all_pairs_close_gives_zero_loss_with_a_gradient():
    sat, grd = random_descriptors(4)
    sat.requires_grad_(True)
    loss = soft_margin_triplet_loss(sat, grd, 10, 1.0, not_negatives=within_25m(torch.zeros(4, 2, dtype=torch.float64)))
    loss.backward()
    assert loss.item() == 0.0 and sat.grad is not None


def test_tiny_batch_with_tiny_ratio_keeps_one_triplet():
    sat, grd = random_descriptors(3)
    loss = soft_margin_triplet_loss(sat, grd, 10, 0.01)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(slow_loss(sat, grd, 10, 0.01))


def test_loss_is_float32_under_bf16_autocast():
    sat, grd = (t.float() for t in random_descriptors(6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = soft_margin_triplet_loss(sat, grd)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(soft_margin_triplet_loss(sat, grd).item(), rel=1e-6)


def test_hard_negative_schedule_follows_the_paper():
    ratios = [hard_topk_ratio_for_epoch(e) for e in (0, 20, 21, 40, 41, 60, 61, 299)]
    assert ratios == [1.0, 1.0, 0.1, 0.1, 0.05, 0.05, 0.01, 0.01]
    assert hard_topk_ratio_for_epoch(30, (1.0, 0.5, 0.2, 0.1)) == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3])
def test_global_negatives_give_the_loss_and_gradient_of_the_whole_batch(world, tmp_path):
    generator = torch.Generator().manual_seed(world)
    sat = torch.nn.functional.normalize(torch.randn(12, 8, generator=generator), dim=1)
    grd = torch.nn.functional.normalize(sat + torch.randn(12, 8, generator=generator), dim=1)
    utm = torch.stack([torch.arange(12.0) * 40, torch.zeros(12)], dim=1).double()
    utm[5] = utm[4] + 10  # one pair closer than 25 m, across devices when world is 2 or 3
    results = run_in_processes(global_negatives_loss, world, tmp_path, sat, grd, utm)
    whole_sat, whole_grd = sat.clone().requires_grad_(), grd.clone().requires_grad_()
    whole = soft_margin_triplet_loss(whole_sat, whole_grd, 10.0, 0.1, not_negatives=within_25m(utm))
    whole.backward()
    for rank, result in enumerate(results):
        local = slice(rank * 12 // world, (rank + 1) * 12 // world)
        torch.testing.assert_close(result["loss"], whole.detach())
        # each device's part gets the sum over devices of the same loss; DDP's average makes it the whole gradient
        torch.testing.assert_close(result["sat"] / world, whole_sat.grad[local])
        torch.testing.assert_close(result["grd"] / world, whole_grd.grad[local])


@pytest.mark.parametrize("ratio", [1.0, 0.1])
def test_tiles_that_cover_another_panorama_of_the_batch_are_not_its_negatives(ratio):
    sat, grd = random_descriptors(8, seed=4)
    positive = torch.tensor([0, 1, 2, 2, 3, 4, 5, 6])  # pairs 2 and 3 share their positive
    semi = torch.tensor([[7, 8, 9], [0, 8, 9], [10, 11, 12], [13, 14, 15], [1, 16, 17], [18, 19, 20],
                         [21, 22, 23], [24, 25, 5]])  # tile 0 covers pano 1, tile 1 pano 4, tile 5 pano 7

    def covers(i, j):
        return int(positive[i]) in [int(positive[j]), *semi[j].tolist()]

    mask = covering_pairs(positive, semi)
    assert mask.tolist() == [[covers(i, j) for j in range(8)] for i in range(8)]
    assert {(i, j) for i in range(8) for j in range(8) if i != j and covers(i, j)} == {(2, 3), (3, 2), (0, 1),
                                                                                      (1, 4), (6, 7)}
    loss = soft_margin_triplet_loss(sat, grd, 10.0, ratio, not_negatives=mask)
    assert loss.item() == pytest.approx(slow_loss(sat, grd, 10.0, ratio, covers=covers))
    assert loss.item() != pytest.approx(slow_loss(sat, grd, 10.0, ratio))


def slow_info_nce(sat, grd, scale, smoothing, covers=None):
    """Row by row with math: each aerial image's cross-entropy over the panoramas it may be confused with, each
    panorama's over the aerial images, smoothing spread over those candidates, the two means averaged."""
    n = len(sat)
    means = []
    for aerial_query in (True, False):
        total = 0.0
        for q in range(n):
            candidates = [r for r in range(n) if r == q or covers is None or
                          not (covers(q, r) if aerial_query else covers(r, q))]
            logits = {r: scale * float(sat[q] @ grd[r] if aerial_query else sat[r] @ grd[q]) for r in candidates}
            log_norm = math.log(sum(math.exp(value) for value in logits.values()))
            for r in candidates:
                target = smoothing / len(candidates) + (1 - smoothing if r == q else 0.0)
                total -= target * (logits[r] - log_norm)
        means.append(total / n)
    return sum(means) / 2


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_symmetric_info_nce_matches_the_slow_loss_with_and_without_pairs_ruled_out(smoothing):
    sat, grd = random_descriptors(7, seed=5)
    loss = SymmetricInfoNCELoss(label_smoothing=smoothing)
    scale = math.exp(loss.logit_scale.item())
    assert scale == pytest.approx(1 / 0.07)
    assert loss(sat, grd).item() == pytest.approx(slow_info_nce(sat, grd, scale, smoothing))
    positive = torch.tensor([0, 1, 2, 2, 3, 4, 5])
    semi = torch.tensor([[7, 8, 9], [0, 8, 9], [10, 11, 12], [13, 14, 15], [1, 16, 17], [18, 19, 20], [21, 22, 23]])

    def covers(i, j):
        return int(positive[i]) in [int(positive[j]), *semi[j].tolist()]

    ruled_out = loss(sat, grd, covering_pairs(positive, semi))
    assert ruled_out.item() == pytest.approx(slow_info_nce(sat, grd, scale, smoothing, covers))
    assert ruled_out.item() != pytest.approx(loss(sat, grd).item())


def test_the_info_nce_temperature_learns_and_the_losses_are_chosen_by_name():
    sat, grd = (t.float().requires_grad_() for t in random_descriptors(6, seed=6))
    loss = build_loss("infonce", loss_weight=10.0)
    loss(sat, grd).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.item() != 0.0
    assert isinstance(build_loss("triplet", loss_weight=3.0), SoftMarginTripletLoss)
    triplet = build_loss("triplet", loss_weight=3.0)
    assert triplet(sat, grd, None, 0.5).item() == pytest.approx(soft_margin_triplet_loss(sat, grd, 3.0, 0.5).item())
    assert set(LOSSES) == {"triplet", "infonce"}
    with pytest.raises(ValueError, match="unknown loss 'arcface'; expected one of triplet, infonce"):
        build_loss("arcface")
