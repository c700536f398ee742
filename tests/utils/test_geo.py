"""Distances on the sphere and the localization figures, against closed forms and a plain loop."""

import math

import numpy as np
import pytest

from utils.geo import EARTH_RADIUS_M, haversine_m, localization_summary


def test_a_degree_of_latitude_and_of_longitude_on_the_equator_are_an_arc_of_the_radius():
    arc = math.pi / 180 * EARTH_RADIUS_M
    first, second = np.array([[0.0, 0.0], [10.0, 20.0], [0.0, 5.0]]), np.array([[1.0, 0.0], [11.0, 20.0], [0.0, 6.0]])
    got = haversine_m(first, second)
    assert got == pytest.approx([arc, arc, arc], rel=1e-12)


def test_short_distances_at_mid_latitude_match_the_flat_earth_approximation():
    rng = np.random.default_rng(0)
    first = np.stack([rng.uniform(37, 48, 200), rng.uniform(-123, -73, 200)], axis=1)
    north_m, east_m = rng.uniform(-60, 60, 200), rng.uniform(-60, 60, 200)
    second = first + np.stack([np.degrees(north_m / EARTH_RADIUS_M),
                               np.degrees(east_m / (EARTH_RADIUS_M * np.cos(np.radians(first[:, 0]))))], axis=1)
    assert haversine_m(first, second) == pytest.approx(np.hypot(north_m, east_m), abs=1e-3)
    assert haversine_m(first, first) == pytest.approx(np.zeros(200), abs=1e-6)


def test_localization_summary_equals_counting_one_query_at_a_time():
    errors = np.array([0.5, 1.0, 3.2, 10.0, 10.01, 49.9, 50.0, 51.0, 700.0])
    summary = localization_summary(errors)
    assert summary["median_m"] == 10.01
    assert list(summary["within_m"]) == [str(t) for t in range(1, 51)]
    for threshold in range(1, 51):
        expected = 100 * sum(1 for error in errors if error <= threshold) / len(errors)
        assert summary["within_m"][str(threshold)] == pytest.approx(expected)
    assert summary["accuracy_10m"] == pytest.approx(100 * 4 / 9)
