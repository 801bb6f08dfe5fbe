"""The validation split divided into a part that chooses and a part that only calibrates, and
why it matters: residuals of the structures that chose the model are optimistic."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from moma.uncertainty.calibration import calibrate
from moma.uncertainty.conformal import empirical_coverage, fit_conformal
from moma.uncertainty.holdout import MIN_SPLIT, take, validation_roles


def test_roles_are_disjoint_halves_seeded_and_cover_the_split() -> None:
    for n in (MIN_SPLIT, 18, 79, 257):
        roles = validation_roles(n, seed=0)
        assert roles.held_out
        assert not set(roles.selection) & set(roles.calibration)
        assert sorted(roles.selection + roles.calibration) == list(range(n))
        assert len(roles.calibration) == n // 2
    assert validation_roles(79, 0) == validation_roles(79, 0)
    assert validation_roles(79, 0).calibration != validation_roles(79, 1).calibration
    # a random subset, not a block: validation files are often sorted by id or by value
    assert validation_roles(100, 0).calibration != list(range(50))


def test_too_small_a_split_is_reused_and_loses_the_guarantee(tmp_path: Path) -> None:
    roles = validation_roles(MIN_SPLIT - 1)
    assert not roles.held_out and roles.selection == roles.calibration == list(range(5))
    y = np.arange(5.0)
    cal = calibrate(val_y=y, val_pred=y + 0.1, train_embeddings=None, val_embeddings=None,
                    folder=tmp_path, roles=roles, coverage=0.5)
    assert cal.conformal is not None and cal.conformal.held_out is False
    assert not cal.conformal.guaranteed


def test_interval_is_fitted_on_the_calibration_part_only(tmp_path: Path) -> None:
    y = np.zeros(40)
    pred = np.arange(40, dtype=float)  # residual i at position i
    roles = validation_roles(40, seed=3)
    cal = calibrate(val_y=y, val_pred=pred, train_embeddings=None, val_embeddings=None,
                    folder=tmp_path, roles=roles)
    expected = fit_conformal(take(y, roles.calibration), take(pred, roles.calibration), 0.9)
    assert cal.conformal is not None
    assert cal.conformal.half_width == expected.half_width
    assert cal.conformal.n_calibration == 20 and cal.conformal.held_out
    assert cal.conformal.guaranteed


def test_selection_makes_reused_residuals_optimistic(rng: np.random.Generator) -> None:
    """Pick the best of 30 candidate models on a validation set, as early stopping does: its
    residuals there understate its error on new data, and an interval fitted on them
    under-covers; fitted on a held-out half it covers at the level."""
    trials, n_val, n_test, reused, held = 300, 80, 400, [], []
    for _ in range(trials):
        noise_scale = rng.uniform(0.8, 1.2, 30)  # 30 "epochs" of similar quality
        val = rng.standard_normal((30, n_val)) * noise_scale[:, None]
        roles = validation_roles(n_val, seed=int(rng.integers(1 << 30)))
        sel, cal = np.asarray(roles.selection), np.asarray(roles.calibration)
        test_err = rng.standard_normal((30, n_test)) * noise_scale[:, None]
        best_all = int(np.argmin(np.abs(val).mean(axis=1)))
        best_sel = int(np.argmin(np.abs(val[:, sel]).mean(axis=1)))
        zeros = np.zeros(n_test)
        interval = fit_conformal(val[best_all], np.zeros(n_val), 0.9)
        reused.append(empirical_coverage(interval, test_err[best_all], zeros))
        interval = fit_conformal(val[best_sel, cal], np.zeros(cal.size), 0.9)
        held.append(empirical_coverage(interval, test_err[best_sel], zeros))
    def margin(values: list[float]) -> float:  # three standard errors of the mean
        return 3 * float(np.std(values)) / math.sqrt(trials)

    assert np.mean(held) >= 0.9 - margin(held)  # measured 0.909
    assert np.mean(reused) < 0.9 - margin(reused)  # measured 0.866: optimistic
