"""Split conformal prediction intervals fitted on validation residuals.

Why split conformal: it needs nothing but a held-out calibration set that the model did not
train on (our validation split), makes no assumption about the model or the error
distribution, and guarantees that, for a new structure exchangeable with the calibration ones,
``P(|y - yhat| <= q) >= coverage``. The half-width ``q`` is the ``ceil((n + 1) * coverage)``-th
smallest absolute validation residual. With fewer calibration points than the level needs
(``ceil((n + 1) * coverage) > n``) no finite interval carries the guarantee; we then use the
largest residual and say so (``guaranteed`` is False) rather than invent a width.

The validation split also chose the model (early stopping, the guard); that reuse makes the
intervals slightly optimistic, which is why the measured test coverage is published
(``benchmarks/coverage.py``, ``docs/results.md``).
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

    def bounds(self, predictions: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        pred = np.asarray(predictions, dtype=np.float64)
        return pred - self.half_width, pred + self.half_width

    def to_json(self) -> dict[str, Any]:
        return {"coverage": self.coverage, "half_width": self.half_width,
                "n_calibration": self.n_calibration, "guaranteed": self.guaranteed,
                "method": "split-conformal/absolute-residual"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConformalInterval:
        try:
            interval = cls(float(data["coverage"]), float(data["half_width"]),
                           int(data["n_calibration"]), bool(data["guaranteed"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MomaError(f"the card's conformal interval is malformed ({exc}); compose or "
                            "train the model again") from None
        if not (0 < interval.coverage < 1 and math.isfinite(interval.half_width)
                and interval.half_width >= 0):
            raise MomaError("the card's conformal interval has an invalid coverage or width; "
                            "compose or train the model again")
        return interval


def fit_conformal(y_true: ArrayLike, y_pred: ArrayLike,
                  coverage: float = DEFAULT_COVERAGE) -> ConformalInterval:
    """The split conformal half-width from calibration (validation) labels and predictions."""
    coverage = check_coverage(coverage)
    residuals = np.abs(np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64))
    residuals = residuals[np.isfinite(residuals)]
    n = int(residuals.size)
    if n == 0:
        raise MomaError("conformal intervals need at least one validation structure; use a split "
                        "with a validation part")
    rank = math.ceil((n + 1) * coverage)
    ordered = np.sort(residuals)
    guaranteed = rank <= n
    half_width = float(ordered[min(rank, n) - 1])
    return ConformalInterval(coverage, half_width, n, guaranteed)


def empirical_coverage(interval: ConformalInterval, y_true: ArrayLike,
                       y_pred: ArrayLike) -> float:
    """The fraction of ``y_true`` inside the intervals around ``y_pred`` (test-time check)."""
    y = np.asarray(y_true, dtype=np.float64)
    if y.size == 0:
        return math.nan
    low, high = interval.bounds(y_pred)
    return float(np.mean((y >= low) & (y <= high)))
