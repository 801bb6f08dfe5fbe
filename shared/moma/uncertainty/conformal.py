"""Split conformal prediction intervals fitted on validation residuals.

Why split conformal: it needs nothing but a held-out calibration set that the model did not
train on (our validation split), makes no assumption about the model or the error
distribution, and guarantees that, for a new structure exchangeable with the calibration ones,
``P(|y - yhat| <= q) >= coverage``. The half-width ``q`` is the ``ceil((n + 1) * coverage)``-th
smallest absolute validation residual. With fewer calibration points than the level needs
(``ceil((n + 1) * coverage) > n``) no finite interval carries the guarantee; we then use the
largest residual and say so (``guaranteed`` is False) rather than invent a width.

The guarantee needs calibration residuals that no choice has seen: ``train`` and ``compose``
fit the interval on the calibration half of the validation split, the other half having chosen
the epoch and the guard's start (:mod:`moma.uncertainty.holdout`; ``held_out`` records it). The
guarantee is marginal (on average over calibration sets and new structures), not per structure;
its finite-sample behaviour is measured in ``docs/coverage.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from moma.errors import MomaError

DEFAULT_COVERAGE = 0.9


def check_coverage(coverage: float) -> float:
    """A coverage level must lie strictly between 0 and 1 (``--coverage 0.9``)."""
    if not (isinstance(coverage, int | float) and 0.0 < float(coverage) < 1.0):
        raise MomaError(f"--coverage {coverage!r} must be a fraction between 0 and 1, e.g. 0.9")
    return float(coverage)


@dataclass(frozen=True)
class ConformalInterval:
    """A symmetric interval ``prediction +- half_width`` (target units) at ``coverage``."""

    coverage: float
    half_width: float
    n_calibration: int
    guaranteed: bool
    held_out: bool | None = None
    """True: calibrated on structures no choice saw; False: on the selection structures too;
    None: not recorded (modules calibrated before the validation split was divided)."""

    def bounds(self, predictions: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        pred = np.asarray(predictions, dtype=np.float64)
        return pred - self.half_width, pred + self.half_width

    def to_json(self) -> dict[str, Any]:
        return {"coverage": self.coverage, "half_width": self.half_width,
                "n_calibration": self.n_calibration, "guaranteed": self.guaranteed,
                "held_out": self.held_out, "method": "split-conformal/absolute-residual"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConformalInterval:
        try:
            held_out = data.get("held_out")
            interval = cls(float(data["coverage"]), float(data["half_width"]),
                           int(data["n_calibration"]), bool(data["guaranteed"]),
                           None if held_out is None else bool(held_out))
        except (KeyError, TypeError, ValueError) as exc:
            raise MomaError(f"the card's conformal interval is malformed ({exc}); compose or "
                            "train the model again") from None
        if not (0 < interval.coverage < 1 and math.isfinite(interval.half_width)
                and interval.half_width >= 0):
            raise MomaError("the card's conformal interval has an invalid coverage or width; "
                            "compose or train the model again")
        return interval


def fit_conformal(y_true: ArrayLike, y_pred: ArrayLike, coverage: float = DEFAULT_COVERAGE,
                  held_out: bool | None = None) -> ConformalInterval:
    """The split conformal half-width from calibration labels and predictions; ``held_out``
    says whether those structures were kept out of every choice (recorded, see above)."""
    coverage = check_coverage(coverage)
    residuals = np.abs(np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64))
    residuals = residuals[np.isfinite(residuals)]
    n = int(residuals.size)
    if n == 0:
        raise MomaError("conformal intervals need at least one validation structure; use a split "
                        "with a validation part")
    rank = math.ceil((n + 1) * coverage)
    ordered = np.sort(residuals)
    guaranteed = rank <= n and held_out is not False
    half_width = float(ordered[min(rank, n) - 1])
    return ConformalInterval(coverage, half_width, n, guaranteed, held_out)


def empirical_coverage(interval: ConformalInterval, y_true: ArrayLike,
                       y_pred: ArrayLike) -> float:
    """The fraction of ``y_true`` inside the intervals around ``y_pred`` (test-time check)."""
    y = np.asarray(y_true, dtype=np.float64)
    if y.size == 0:
        return math.nan
    low, high = interval.bounds(y_pred)
    return float(np.mean((y >= low) & (y <= high)))


def conformal_rank(n_calibration: int, coverage: float) -> int:
    """The rank of the residual used as half-width (capped at ``n_calibration``)."""
    return min(math.ceil((n_calibration + 1) * coverage), n_calibration)


def expected_coverage(n_calibration: int, coverage: float = DEFAULT_COVERAGE) -> float:
    """The exact marginal coverage of a held-out split conformal interval: rank / (n + 1).

    With 9 calibration structures at 90 % the rank is 9 (the largest residual) and the
    coverage 90 %; with 18 it is 18/19 = 94.7 %: the level is met, often exceeded."""
    return conformal_rank(n_calibration, coverage) / (n_calibration + 1)


def coverage_window_probability(n_calibration: int, n_test: int, low: float, high: float,
                              coverage: float = DEFAULT_COVERAGE) -> float:
    """The probability that a test split of ``n_test`` structures sees an empirical coverage
    within ``[low, high]``, for a perfectly calibrated (exchangeable, held-out) interval.

    Why: the coverage given one calibration set is Beta(k, n + 1 - k) distributed (k the
    rank), so the covered count on the test split is beta-binomial; with tens of structures
    a correct interval misses a +-5-point window often, and that is no evidence against it.
    """
    from scipy.stats import betabinom

    k = conformal_rank(n_calibration, coverage)
    counts = np.arange(n_test + 1)
    inside = (counts >= low * n_test - 1e-9) & (counts <= high * n_test + 1e-9)
    pmf = betabinom.pmf(counts, n_test, k, n_calibration + 1 - k)
    return float(pmf[inside].sum())
