"""Calibrate a freshly trained or composed model: the one call ``train`` and ``compose`` make.

It predicts the validation split with every part of the model (one part unless an ensemble),
fits the conformal interval on the combined, range-treated predictions of the validation
structures no choice has seen (:mod:`moma.uncertainty.holdout`), and fits the
applicability domain on the embeddings of the highest-weight part (the model whose features
decide most of the prediction). Nothing here reads the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moma.backbones.base import Backbone, BackboneModel
from moma.modules.card import TargetNormalizer
from moma.training.loop import embed_graphs, predict_standardized
from moma.uncertainty.calibration import Calibration, calibrate
from moma.uncertainty.conformal import DEFAULT_COVERAGE
from moma.uncertainty.holdout import ValidationRoles
from moma.uncertainty.ranges import PhysicalRange, apply_range


def part_predictions(backbone: Backbone, models: Sequence[BackboneModel],
                     normalizers: Sequence[TargetNormalizer], graphs: Sequence[Any],
                     device: str = "cpu") -> list[np.ndarray]:
    """Each part's predictions in target units."""
    return [norm.denormalize(predict_standardized(backbone, model, graphs, device=device))
            for model, norm in zip(models, normalizers, strict=True)]


def combine(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return (w / w.sum()) @ np.asarray(parts, dtype=np.float64)


def calibrate_model(backbone: Backbone, models: Sequence[BackboneModel],
                    weights: Sequence[float], normalizers: Sequence[TargetNormalizer], *,
                    train_graphs: Sequence[Any], val_graphs: Sequence[Any], val_y: np.ndarray,
                    folder: Path, coverage: float = DEFAULT_COVERAGE,
                    physical_range: PhysicalRange | None = None, range_policy: str = "clip",
                    roles: ValidationRoles | None = None, device: str = "cpu") -> Calibration:
    """Fit intervals (on ``roles.calibration``) and domain for a model whose parts are
    ``models``; writes the domain file."""
    val_pred = combine(part_predictions(backbone, models, normalizers, val_graphs, device),
                       weights)
    lead = models[int(np.argmax(np.asarray(weights)))]
    train_emb = embed_graphs(backbone, lead, train_graphs, device=device)
    val_emb = embed_graphs(backbone, lead, val_graphs, device=device)
    return calibrate(val_y=val_y, val_pred=val_pred, train_embeddings=train_emb,
                     val_embeddings=val_emb, folder=folder, coverage=coverage,
                     physical_range=physical_range, range_policy=range_policy, roles=roles)


def ranged(values: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Predictions after the model's range policy (what is reported and scored)."""
    return apply_range(values, calibration.physical_range, calibration.range_policy).values
