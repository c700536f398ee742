"""From a panorama's best aerial tiles to an answer: an estimated position and a confidence in it.

- Position: the best tile's centre (`top1`), or a `vote`: the centres of the top-k tiles that lie within
  `radius_m` of the best one, weighted by `exp((s - s_best) / temperature)` of their similarity `s`, so that
  overlapping tiles that all match pull the estimate between them and a lone far tile counts for nothing.
- Confidence: the margin between the best similarity and that of the best tile of another place (a tile
  farther than `distinct_m` from the best one); when every top-k tile is near the best, the k-th similarity
  bounds it. A place that stands out scores high; two look-alike places score near 0.
- `coverage_curve` shows what a threshold on the confidence buys: for each share of panoramas answered
  (the most confident first), the share of those answered correctly.
"""

from __future__ import annotations

import numpy as np

from utils.geo import haversine_m

ESTIMATES = ("top1", "vote")
VOTE_TEMPERATURE = 0.01


def estimate_position(positions: np.ndarray, scores: np.ndarray, method: str, radius_m: float) -> np.ndarray:
    """(lat, lon) from the top-k tiles' centres (k, 2), best first, and their similarities (k,)."""
    positions, scores = np.asarray(positions, np.float64), np.asarray(scores, np.float64)
    if method == "top1" or len(positions) == 1:
        return positions[0].copy()
    if method != "vote":
        raise ValueError(f"unknown estimate {method!r}; expected one of {ESTIMATES}")
    near = haversine_m(positions[:1], positions) <= radius_m
    weights = np.exp((scores[near] - scores[0]) / VOTE_TEMPERATURE)
    latitude, longitude = (weights[:, None] * positions[near]).sum(0) / weights.sum()
    return np.array([latitude, longitude])


def place_margin(positions: np.ndarray | None, scores: np.ndarray, distinct_m: float) -> float:
    """The best similarity less that of the best tile farther than `distinct_m` from the best tile; without
    positions, less the second similarity."""
    scores = np.asarray(scores, np.float64)
    if len(scores) == 1:
        return float("nan")
    if positions is None:
        return float(scores[0] - scores[1])
    far = haversine_m(np.asarray(positions[:1], np.float64), np.asarray(positions, np.float64)) > distinct_m
    other = scores[far].max() if far.any() else scores[-1]
    return float(scores[0] - other)


def coverage_curve(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(share answered, accuracy among those answered, threshold) when answering only the panoramas whose
    confidence is at least each threshold, the most confident first. Ties are answered together."""
    confidences, correct = np.asarray(confidences, np.float64), np.asarray(correct, bool)
    order = np.argsort(-confidences, kind="stable")
    sorted_conf, hits = confidences[order], np.cumsum(correct[order])
    last_of_tie = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    answered = last_of_tie + 1
    return answered / len(confidences), hits[last_of_tie] / answered, sorted_conf[last_of_tie]
