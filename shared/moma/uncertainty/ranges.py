"""Physical ranges of a property, and what a prediction outside one becomes.

A regression head knows nothing of physics: fine-tuned on a few dozen heavy-tailed dielectric
constants it can predict -33. A task may declare the range its property lives in; the range is
stored in the model's card (``extra.physical_range``) and every prediction outside it is either
clipped to the nearest bound (``clip``, the default: the bound is always closer to the truth
than the impossible value) or kept and flagged (``flag``). Either way the output says which
predictions were affected.

Known tasks declare their range here; any dataset can declare one with ``--range LOW:HIGH``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from moma.errors import MomaError

POLICIES = ("clip", "flag")


@dataclass(frozen=True)
class PhysicalRange:
    """``low <= value <= high`` (either bound may be None); ``why`` says what the bound is."""

    low: float | None
    high: float | None
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "why": self.why}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhysicalRange:
        try:
            low = None if data.get("low") is None else float(data["low"])
            high = None if data.get("high") is None else float(data["high"])
            return _checked(cls(low, high, str(data.get("why", ""))))
        except (TypeError, ValueError, AttributeError) as exc:
            raise MomaError(f"the card's physical range is malformed ({exc}); fix "
                            "extra.physical_range or train the model again") from None

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}] ({self.why})" if self.why else f"[{low}, {high}]"


_DIELECTRIC = PhysicalRange(1.0, None, "a dielectric constant is at least 1, vacuum's")
TASK_RANGES: dict[str, PhysicalRange] = {
    "jarvis_2d_dielectric_opt": _DIELECTRIC,
    "jarvis_2d_dielectric_tbmbj": _DIELECTRIC,
    "mp_poly_electronic": _DIELECTRIC,
    "mp_poly_total": _DIELECTRIC,
    "mp_eps_electronic": PhysicalRange(0.0, None, "log10 of a dielectric constant >= 1"),
    "jarvis_2d_gap_tbmbj": PhysicalRange(0.0, None, "a band gap is non-negative"),
    "jarvis_2d_exfoliation": PhysicalRange(0.0, None,
                                           "exfoliating a bound layer costs energy"),
    "mp_elastic_anisotropy": PhysicalRange(0.0, None,
                                           "the universal anisotropy index is non-negative"),
    "mp_poisson_ratio": PhysicalRange(-1.0, 0.5,
                                      "an isotropic stable solid has -1 <= Poisson ratio <= 0.5"),
    "castelli_perovskites:dir_gap": PhysicalRange(0.0, None, "a band gap is non-negative"),
    "castelli_perovskites:ind_gap": PhysicalRange(0.0, None, "a band gap is non-negative"),
}


def _checked(rng: PhysicalRange) -> PhysicalRange:
    for bound in (rng.low, rng.high):
        if bound is not None and not math.isfinite(bound):
            raise MomaError(f"physical range bound {bound!r} must be finite (omit it instead)")
    if rng.low is not None and rng.high is not None and rng.low >= rng.high:
        raise MomaError(f"physical range {rng.describe()}: the low bound must be below the high "
                        "one")
    return rng


def parse_range(text: str) -> PhysicalRange:
    """``--range LOW:HIGH`` (either side may be empty: ``0:`` is non-negative)."""
    low_s, sep, high_s = text.partition(":")
    if not sep:
        raise MomaError(f"--range {text!r} must be LOW:HIGH, e.g. 0: or -1:0.5")
    try:
        low = float(low_s) if low_s.strip() else None
        high = float(high_s) if high_s.strip() else None
    except ValueError:
        raise MomaError(f"--range {text!r}: bounds must be numbers, e.g. 0: or -1:0.5") from None
    if low is None and high is None:
        raise MomaError(f"--range {text!r} gives no bound; pass at least one, e.g. 0:")
    return _checked(PhysicalRange(low, high, "declared with --range"))


def range_for(task: str, target: str = "") -> PhysicalRange | None:
    """The declared range of a known task (``task`` or ``task:target``), else None."""
    return TASK_RANGES.get(f"{task}:{target}") or TASK_RANGES.get(task)


@dataclass
class RangeOutcome:
    """Predictions after the range policy, and which ones were outside the range."""

    values: np.ndarray
    outside: np.ndarray
    policy: str

    @property
    def count(self) -> int:
        return int(self.outside.sum())

    def sentence(self, rng: PhysicalRange) -> str:
        if not self.count:
            return f"no prediction fell outside the physical range {rng.describe()}"
        done = "clipped to it" if self.policy == "clip" else "kept and flagged"
        return (f"{self.count} of {self.values.size} predictions fell outside the physical range "
                f"{rng.describe()}: {done}")


def apply_range(predictions: ArrayLike, rng: PhysicalRange | None,
                policy: str = "clip") -> RangeOutcome:
    """Clip or flag ``predictions`` outside ``rng`` (no range: unchanged, nothing flagged)."""
    if policy not in POLICIES:
        raise MomaError(f"unknown range policy {policy!r}; choose one of {', '.join(POLICIES)}")
    values = np.asarray(predictions, dtype=np.float64).copy()
    outside = np.zeros(values.shape, dtype=bool)
    if rng is None:
        return RangeOutcome(values, outside, policy)
    if rng.low is not None:
        outside |= values < rng.low
    if rng.high is not None:
        outside |= values > rng.high
    if policy == "clip":
        values = np.clip(values, -np.inf if rng.low is None else rng.low,
                         np.inf if rng.high is None else rng.high)
    return RangeOutcome(values, outside, policy)
