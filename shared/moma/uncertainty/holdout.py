"""Which validation structures choose the model and which calibrate its intervals.

Why split the validation split: split conformal prediction promises coverage only when the
calibration residuals are exchangeable with a new structure's. Residuals of structures that
also *chose* the model (the early-stopping epoch, the guard's start) are not: the model was
picked because it does well on them, so their residuals are smaller than a new structure's and
the intervals come out too narrow. So the validation split is divided once, by a seeded
permutation, into a **selection** part (early stopping, the guard) and a **calibration** part
that no choice ever sees; the conformal interval is fitted on the calibration part only, and
then carries the split conformal guarantee exactly (given the training data).

The cost: each choice sees half the validation structures. Below ``MIN_SPLIT`` structures a
half would be too small to choose anything, so both roles use the whole validation split and
the interval says so (``held_out`` False: the guarantee does not hold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_SPLIT = 6
"""Fewest validation structures that are divided (3 to choose, 3 to calibrate)."""


@dataclass(frozen=True)
class ValidationRoles:
    """Positions (into the validation split) of the selection and calibration parts."""

    selection: list[int]
    calibration: list[int]
    held_out: bool
    """True when the two parts are disjoint (the conformal guarantee holds)."""

    def to_json(self) -> dict[str, Any]:
        return {"n_selection": len(self.selection), "n_calibration": len(self.calibration),
                "held_out": self.held_out}


def validation_roles(n_val: int, seed: int = 0) -> ValidationRoles:
    """Divide ``n_val`` validation positions: half (rounded down) calibrates, the rest choose."""
    everything = list(range(n_val))
    if n_val < MIN_SPLIT:
        return ValidationRoles(everything, everything, False)
    order = np.random.default_rng([seed, 0x5EC7]).permutation(n_val)
    n_cal = n_val // 2
    return ValidationRoles(sorted(order[n_cal:].tolist()), sorted(order[:n_cal].tolist()), True)


def take(items: Any, positions: list[int]) -> Any:
    """``items`` (a list or an array) at ``positions``, keeping its type."""
    if isinstance(items, np.ndarray):
        return items[np.asarray(positions, dtype=np.int64)]
    return [items[i] for i in positions]
