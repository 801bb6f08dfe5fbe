"""The spread of an ensemble's parts: how much the composed models disagree.

A weighted standard deviation of the parts' predictions (target units), with the same weights
that combine them. It is not a calibrated interval (parts fine-tuned on the same data share
their errors), so it is reported beside the conformal interval, never instead of it; a large
spread says the parts learned different things for this structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def ensemble_spread(part_predictions: Sequence[ArrayLike], weights: ArrayLike) -> np.ndarray:
    """Weighted standard deviation over parts, one value per structure (zeros for one part)."""
    preds = np.asarray([np.asarray(p, dtype=np.float64) for p in part_predictions])
    w = np.asarray(weights, dtype=np.float64)
    if preds.ndim != 2 or preds.shape[0] != w.size:
        raise ValueError(f"{preds.shape[0]} part predictions for {w.size} weights")
    w = w / w.sum()
    mean = w @ preds
    return np.sqrt(np.maximum(w @ (preds - mean) ** 2, 0.0))
