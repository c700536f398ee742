import numpy as np
import pytest

from utils.geo import haversine_m
from utils.place_estimate import coverage_curve, estimate_position, place_margin

# three tiles 40 m apart along a parallel at 45 N, and one 2 km away
LAT = 45.0
METRE_LON = 1 / (111_194.9 * np.cos(np.radians(LAT)))
ROW = np.array([[LAT, 13.0], [LAT, 13.0 + 40 * METRE_LON], [LAT, 13.0 + 80 * METRE_LON],
                [LAT + 2000 / 111_194.9, 13.0]])


def test_top1_is_the_best_tiles_centre_and_the_vote_weighs_the_near_tiles_by_similarity():
    scores = np.array([0.90, 0.89, 0.80, 0.895])
    assert estimate_position(ROW, scores, "top1", 50).tolist() == ROW[0].tolist()
    vote = estimate_position(ROW, scores, "vote", radius_m=50)  # the third (80 m) and the far one do not vote
    weights = np.exp((scores[:2] - 0.90) / 0.01)
    expected_lon = (weights * ROW[:2, 1]).sum() / weights.sum()
    assert vote == pytest.approx([LAT, expected_lon], abs=1e-12)
    assert haversine_m(vote[None], ROW[:1])[0] == pytest.approx(40 * weights[1] / weights.sum(), rel=1e-3)
    assert estimate_position(ROW[:1], scores[:1], "vote", 50).tolist() == ROW[0].tolist()
    with pytest.raises(ValueError, match="unknown estimate 'mean'"):
        estimate_position(ROW, scores, "mean", 50)


def test_the_confidence_is_the_margin_over_the_best_other_place():
    scores = np.array([0.90, 0.89, 0.80, 0.70])
    assert place_margin(ROW, scores, distinct_m=50) == pytest.approx(0.90 - 0.80)  # the 40 m tile is the same place
    assert place_margin(ROW, scores, distinct_m=100) == pytest.approx(0.90 - 0.70)  # only the far one is another
    assert place_margin(ROW[:3], scores[:3], distinct_m=100) == pytest.approx(0.90 - 0.80)  # none: the k-th bounds it
    assert place_margin(None, scores, distinct_m=50) == pytest.approx(0.01)  # no positions: the second
    assert np.isnan(place_margin(ROW[:1], scores[:1], 50))


def test_the_coverage_curve_is_accuracy_among_the_most_confident():
    rng = np.random.default_rng(0)
    confidences = np.round(rng.uniform(0, 1, 200), 2)  # rounded: ties are answered together
    correct = rng.uniform(0, 1, 200) < confidences
    shares, accuracies, thresholds = coverage_curve(confidences, correct)
    assert len(thresholds) == len(np.unique(confidences))
    for share, accuracy, threshold in zip(shares, accuracies, thresholds, strict=True):
        answered = confidences >= threshold
        assert share == pytest.approx(answered.mean()) and accuracy == pytest.approx(correct[answered].mean())
    assert shares[-1] == 1.0 and accuracies[-1] == pytest.approx(correct.mean())
    assert accuracies[0] > accuracies[-1]  # here the confident ones are right more often
