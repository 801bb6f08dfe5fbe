"""The guard: a composition is kept only if it beats the start a careful person would try first.

MoMa's promise is that a composed start fine-tunes better than the base alone; measured on the
shared tasks it often does not (docs/results.md). So compose also fine-tunes the plain base
(the paper's "fine-tune the backbone" baseline; for candidates without a shared base, the
single module with the best kNN proxy) with the same settings, and keeps whichever start has
the lower validation MAE. The choice is made on validation only; the test split is read once,
for the kept model. When the composition already is that baseline (one selected module that is
also the best single one), the guard would repeat the same computation and is skipped, saying
so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moma.amc.plan import Start
from moma.backbones.base import Backbone
from moma.errors import ModuleFormatError


@dataclass
class GuardBaseline:
    """What the guard fine-tunes instead of the composition."""

    label: str
    starts: list[Start]


@dataclass
class GuardDecision:
    """Validation MAE (target units) of both starts and which one was kept."""

    baseline: str
    composed_val_mae: float
    baseline_val_mae: float
    kept: str  # "composed" or "baseline"
    composed_label: str

    @property
    def difference(self) -> float:
        return abs(self.composed_val_mae - self.baseline_val_mae)

    def sentence(self, unit: str = "") -> str:
        unit_s = f" {unit}" if unit else ""
        if self.kept == "composed":
            won, lost = (self.composed_label, self.composed_val_mae), (self.baseline,
                                                                       self.baseline_val_mae)
        else:
            won, lost = (self.baseline, self.baseline_val_mae), (self.composed_label,
                                                                 self.composed_val_mae)
        rel = self.difference / lost[1] * 100 if lost[1] else 0.0
        return (f"guard: kept {won[0]}, validation MAE {won[1]:.4g}{unit_s} against "
                f"{lost[1]:.4g}{unit_s} for {lost[0]} ({self.difference:.3g}{unit_s}, "
                f"{rel:.1f} % lower)")

    def to_json(self, unit: str = "") -> dict[str, Any]:
        return {"ran": True, "baseline": self.baseline, "composed": self.composed_label,
                "composed_val_mae": self.composed_val_mae,
                "baseline_val_mae": self.baseline_val_mae, "kept": self.kept,
                "difference": self.difference, "sentence": self.sentence(unit)}


def decide(composed_label: str, composed_val_mae: float, baseline: str,
           baseline_val_mae: float) -> GuardDecision:
    """Keep the start with the lower validation MAE (ties keep the composition)."""
    kept = "baseline" if baseline_val_mae < composed_val_mae else "composed"
    return GuardDecision(baseline, composed_val_mae, baseline_val_mae, kept, composed_label)


def best_single_index(proxy_mae: np.ndarray | None, n: int) -> int:
    """The candidate with the lowest kNN proxy MAE (the first when no proxy was computed)."""
    if proxy_mae is None or len(proxy_mae) != n or n == 0:
        return 0
    return int(np.nanargmin(proxy_mae))


def base_state_or_none(backbone: Backbone, base_sha256: str,
                       find: Any) -> dict[str, Any] | None:
    """The base weights through ``find(backbone, sha)``, or None where they are not at hand."""
    try:
        state: dict[str, Any] = find(backbone, base_sha256)
    except ModuleFormatError:
        return None
    return state
