"""Predictions that are not finite are an error, never a printed ``nan``.

A module can pass every load-time check and still compute NaN or inf for some input (a
BatchNorm running variance below zero, a structure far outside what it was trained on). A
number like that must stop the command with the structures named, not reach a results file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moma.errors import ModuleFormatError
from moma.safe_text import clean


def require_finite_predictions(ids: Sequence[object], values: np.ndarray, source: str) -> None:
    """Raise :class:`ModuleFormatError` naming the first structures with a non-finite value."""
    bad = [str(ids[int(i)]) for i in np.flatnonzero(~np.isfinite(np.asarray(values, dtype=float)))]
    if bad:
        listed = ", ".join(clean(b, 40) for b in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ModuleFormatError(
            f"{source} predicted a non-finite value (NaN or inf) for {len(bad)} of {len(ids)} "
            f"structure(s) ({listed}): the module is numerically broken for these inputs; "
            "nothing was written: use another module or retrain it")
