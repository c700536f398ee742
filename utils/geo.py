"""Distances on the Earth between latitude/longitude positions, and the metre-level localization figures."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG)
THRESHOLDS_M = tuple(range(1, 51))


def haversine_m(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Great-circle distances in metres between (N, 2) (latitude, longitude) positions in degrees, row by row."""
    first, second = np.radians(np.asarray(first, np.float64)), np.radians(np.asarray(second, np.float64))
    half = np.sin((second - first) / 2) ** 2
    a = half[..., 0] + np.cos(first[..., 0]) * np.cos(second[..., 0]) * half[..., 1]
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def localization_summary(errors_m: np.ndarray) -> dict[str, object]:
    """The median error, the accuracy at 10 m and the share within 1..50 m (percent), from per-query errors."""
    errors_m = np.asarray(errors_m, np.float64)
    within = {str(t): float(np.mean(errors_m <= t) * 100.0) for t in THRESHOLDS_M}
    return {"median_m": float(np.median(errors_m)), "accuracy_10m": within["10"], "within_m": within}
