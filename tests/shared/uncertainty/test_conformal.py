"""Split conformal intervals: the rank rule, the finite-sample guarantee, coverage on new data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from moma.errors import MomaError
from moma.uncertainty.conformal import (
    ConformalInterval,
    conformal_rank,
    coverage_window_probability,
    empirical_coverage,
    expected_coverage,
    fit_conformal,
)


def test_half_width_is_the_conformal_rank_of_the_residuals() -> None:
    y_true = np.zeros(19)
    y_pred = np.arange(1, 20, dtype=float)  # residuals 1..19
    interval = fit_conformal(y_true, y_pred, 0.9)
    # ceil((19 + 1) * 0.9) = 18: the 18th smallest residual
    assert interval.half_width == 18.0
    assert interval.guaranteed and interval.n_calibration == 19


def test_too_few_points_for_the_level_use_the_largest_residual_and_say_so() -> None:
    interval = fit_conformal(np.zeros(5), np.array([0.5, 1.0, 2.0, 3.0, 4.0]), 0.9)
    assert interval.half_width == 4.0
    assert not interval.guaranteed


def test_coverage_on_fresh_data_is_close_to_the_level(rng: np.random.Generator) -> None:
    noise = rng.standard_t(3, size=4000)  # heavy tails: no Gaussian assumption needed
    interval = fit_conformal(noise[:500], np.zeros(500), 0.9)
    covered = empirical_coverage(interval, noise[500:], np.zeros(3500))
    assert 0.87 <= covered <= 0.94


def test_round_trip_and_bad_levels() -> None:
    interval = fit_conformal([1.0, 2.0, 3.0], [1.5, 2.0, 2.0], 0.5)
    assert ConformalInterval.from_json(interval.to_json()) == interval
    for level in (0.0, 1.0, 1.5, math.nan):
        with pytest.raises(MomaError, match="coverage"):
            fit_conformal([1.0], [1.0], level)
    with pytest.raises(MomaError):
        ConformalInterval.from_json({"coverage": 0.9, "half_width": -1, "n_calibration": 3,
                                     "guaranteed": True})


def test_expected_coverage_is_rank_over_n_plus_one() -> None:
    assert expected_coverage(9, 0.9) == 0.9  # the largest of 9 residuals
    assert expected_coverage(18, 0.9) == 18 / 19  # the largest of 18: over-covers
    assert expected_coverage(5, 0.9) == 5 / 6  # too few points: below the level


def test_window_probability_matches_simulated_test_splits(rng: np.random.Generator) -> None:
    n_cal, n_test, sims = 18, 18, 20000
    residuals = rng.exponential(size=(sims, n_cal + n_test))
    width = np.sort(residuals[:, :n_cal], axis=1)[:, conformal_rank(n_cal, 0.9) - 1]
    covered = (residuals[:, n_cal:] <= width[:, None]).mean(axis=1)
    simulated = np.mean((covered >= 0.85) & (covered <= 0.95))
    exact = coverage_window_probability(n_cal, n_test, 0.85, 0.95)
    assert abs(simulated - exact) < 0.015
    assert abs(np.mean(covered == 1.0) - 0.5) < 0.015  # all 18 covered: half the time
    assert coverage_window_probability(128, 256, 0.85, 0.95) > 0.85
