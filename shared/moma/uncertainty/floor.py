"""The floor every model must clear: the train-mean and train-median predictors.

A model whose MAE is not clearly below that of predicting the training median for every
structure has learned nothing a scientist can use, however its training went. Such a model is
flagged wherever its metrics are shown (terminal and report), on validation and on test.
"Clearly below" means at least ``CLEAR_MARGIN`` (5 %) lower: a model within a few per cent of
the median predictor is indistinguishable from it on test sets of tens to hundreds of
structures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

CLEAR_MARGIN = 0.05


def floor_maes(train_y: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """MAE on ``y`` of predicting the train mean and the train median for every structure."""
    train, target = np.asarray(train_y, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if target.size == 0:
        return {"train_mean": float("nan"), "train_median": float("nan")}
    return {"train_mean": float(np.mean(np.abs(target - np.mean(train)))),
            "train_median": float(np.mean(np.abs(target - np.median(train))))}


def floor_flags(split: str, mae: float, floors: dict[str, float], unit: str = "") -> list[str]:
    """One sentence for ``split`` when the model does not clearly beat a floor predictor."""
    unit_s = f" {unit}" if unit else ""
    failed = [f"the {label} predictor's {floors[name]:.4g}"
              for name, label in (("train_median", "train-median"), ("train_mean", "train-mean"))
              if np.isfinite(floors.get(name, float("nan")))
              and not mae < (1.0 - CLEAR_MARGIN) * floors[name]]
    if not failed:
        return []
    return [f"{split} MAE {mae:.4g}{unit_s} is not clearly below {' nor '.join(failed)}: "
            "this model is no better than predicting a constant"]


def floor_report(train_y: ArrayLike, val_y: ArrayLike, val_mae: float,
                 test_y: ArrayLike | None = None, test_mae: float | None = None,
                 unit: str = "") -> dict[str, Any]:
    """Floors on validation (and test when given) with the flags, for report.json."""
    val_floor = floor_maes(train_y, val_y)
    out: dict[str, Any] = {"val": val_floor, "margin": CLEAR_MARGIN,
                           "flags": floor_flags("validation", val_mae, val_floor, unit)}
    if test_y is not None and test_mae is not None:
        test_floor = floor_maes(train_y, test_y)
        out["test"] = test_floor
        out["flags"] += floor_flags("test", test_mae, test_floor, unit)
    return out
