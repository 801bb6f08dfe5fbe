"""A model's uncertainty as stored in its card, and as applied to new predictions.

The card of every trained or composed model carries, under ``extra``:

- ``uncertainty``: ``{"format": "moma-uncertainty/1", "conformal": {...}, "domain": {...}}``
  (the split conformal interval fitted on validation residuals and the applicability-domain
  threshold with the sha256 of ``domain.safetensors``);
- ``physical_range`` and ``range_policy`` when the task declares a range.

:func:`calibrate` fits it once, after training, from validation predictions and the training
and validation embeddings; :func:`annotate` turns raw predictions into the columns ``predict``
prints and writes (prediction, interval, spread, domain score, flags).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from moma.uncertainty.conformal import DEFAULT_COVERAGE, ConformalInterval, fit_conformal
from moma.uncertainty.domain import DomainModel, fit_domain, load_domain, save_domain
from moma.uncertainty.holdout import ValidationRoles, take
from moma.uncertainty.ranges import PhysicalRange, RangeOutcome, apply_range
from moma.uncertainty.spread import ensemble_spread

UNCERTAINTY_FORMAT = "moma-uncertainty/1"


@dataclass
class Calibration:
    """Everything needed to qualify a prediction of one model."""

    conformal: ConformalInterval | None = None
    domain_entry: dict[str, Any] | None = None
    physical_range: PhysicalRange | None = None
    range_policy: str = "clip"
    domain: DomainModel | None = field(default=None, repr=False)

    def card_extra(self) -> dict[str, Any]:
        """The entries this calibration adds to a card's ``extra``."""
        extra: dict[str, Any] = {"uncertainty": {
            "format": UNCERTAINTY_FORMAT,
            "conformal": self.conformal.to_json() if self.conformal else None,
            "domain": self.domain_entry,
        }}
        if self.physical_range is not None:
            extra["physical_range"] = self.physical_range.to_json()
            extra["range_policy"] = self.range_policy
        return extra

    @classmethod
    def from_card_extra(cls, extra: dict[str, Any], folder: Path | None = None) -> Calibration:
        """Read a card's entries (any may be absent: older modules predict without them)."""
        raw = extra.get("uncertainty") or {}
        conformal = (ConformalInterval.from_json(raw["conformal"])
                     if isinstance(raw.get("conformal"), dict) else None)
        entry = raw.get("domain") if isinstance(raw.get("domain"), dict) else None
        rng = (PhysicalRange.from_json(extra["physical_range"])
               if isinstance(extra.get("physical_range"), dict) else None)
        policy = str(extra.get("range_policy", "clip"))
        domain = load_domain(folder, entry) if (entry and folder is not None) else None
        return cls(conformal, entry, rng, policy, domain)


def calibrate(*, val_y: ArrayLike, val_pred: ArrayLike, train_embeddings: ArrayLike | None,
              val_embeddings: ArrayLike | None, folder: Path,
              coverage: float = DEFAULT_COVERAGE, physical_range: PhysicalRange | None = None,
              range_policy: str = "clip", roles: ValidationRoles | None = None) -> Calibration:
    """Fit the interval on (range-treated) predictions of the calibration part of the
    validation split (``roles``; all of it when None) and the domain on the embeddings of the
    whole split; writes ``folder/domain.safetensors`` when embeddings are given."""
    treated = apply_range(val_pred, physical_range, range_policy).values
    y = np.asarray(val_y, dtype=np.float64)
    if roles is None:
        conformal = fit_conformal(y, treated, coverage)
    else:
        conformal = fit_conformal(take(y, roles.calibration), take(treated, roles.calibration),
                                  coverage, held_out=roles.held_out)
    domain = entry = None
    if train_embeddings is not None and val_embeddings is not None:
        domain = fit_domain(train_embeddings, val_embeddings)
        folder.mkdir(parents=True, exist_ok=True)
        entry = save_domain(folder, domain)
    return Calibration(conformal, entry, physical_range, range_policy, domain)


@dataclass
class Annotated:
    """Predictions of one model with every uncertainty column (arrays of equal length)."""

    prediction: np.ndarray
    raw_prediction: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    spread: np.ndarray | None
    domain_score: np.ndarray | None
    in_domain: np.ndarray | None
    outside_range: np.ndarray
    range_outcome: RangeOutcome

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per structure (columns that do not exist are left out)."""
        out = []
        for i in range(self.prediction.size):
            row: dict[str, Any] = {"prediction": float(self.prediction[i])}
            if self.lower is not None and self.upper is not None:
                row["lower"], row["upper"] = float(self.lower[i]), float(self.upper[i])
            if self.spread is not None:
                row["ensemble_spread"] = float(self.spread[i])
            if self.domain_score is not None and self.in_domain is not None:
                row["domain_score"] = float(self.domain_score[i])
                row["in_domain"] = bool(self.in_domain[i])
            row["outside_physical_range"] = bool(self.outside_range[i])
            if self.outside_range[i]:
                row["raw_prediction"] = float(self.raw_prediction[i])
            out.append(row)
        return out


def annotate(calibration: Calibration, part_predictions: list[np.ndarray],
             weights: ArrayLike, embeddings: ArrayLike | None = None) -> Annotated:
    """Combine parts, apply the range, add the interval, the spread and the domain score."""
    w = np.asarray(weights, dtype=np.float64)
    raw = (w / w.sum()) @ np.asarray(part_predictions, dtype=np.float64)
    ranged = apply_range(raw, calibration.physical_range, calibration.range_policy)
    lower = upper = None
    if calibration.conformal is not None:
        lower, upper = calibration.conformal.bounds(ranged.values)
        if calibration.range_policy == "clip" and calibration.physical_range is not None:
            lower = apply_range(lower, calibration.physical_range, "clip").values
            upper = apply_range(upper, calibration.physical_range, "clip").values
    spread = ensemble_spread(part_predictions, w) if len(part_predictions) > 1 else None
    score = inside = None
    if calibration.domain is not None and embeddings is not None:
        score = calibration.domain.score(embeddings)
        inside = ~calibration.domain.outside(score)
    return Annotated(ranged.values, raw, lower, upper, spread, score, inside, ranged.outside,
                     ranged)
