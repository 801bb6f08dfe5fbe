"""One training run end to end: dataset -> graphs -> model -> module on disk.

This is what ``moma-client train`` and the federated ClientApp call; the CLI only parses options
and shows progress. The test split is touched exactly once, after training, for the card.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import moma
from moma.backbones.base import Backbone
from moma.data.prepared import PreparedData
from moma.modules.card import ModuleCard, TargetNormalizer
from moma.modules.store import LoadedModule, save_module
from moma.training.loop import EpochStats, TrainConfig, TrainResult, fit, predict_standardized
from moma.training.modeling import initial_model, module_state


@dataclass
class TrainOutcome:
    card: ModuleCard
    result: TrainResult
    metrics: dict[str, float] = field(default_factory=dict)


def normalizer_for(targets: np.ndarray) -> TargetNormalizer:
    std = float(np.std(targets))
    return TargetNormalizer(mean=float(np.mean(targets)), std=std if std > 1e-12 else 1.0)


def baseline_maes(train_y: np.ndarray, test_y: np.ndarray) -> dict[str, float]:
    """The floor any model must clear: predicting the train mean or the train median."""
    return {
        "test_mae_train_mean": float(np.mean(np.abs(test_y - np.mean(train_y)))),
        "test_mae_train_median": float(np.mean(np.abs(test_y - np.median(train_y)))),
    }


def train_module(
    data: PreparedData,
    backbone: Backbone,
    *,
    kind: str,
    config: TrainConfig,
    out: Path,
    init: LoadedModule | None = None,
    name: str | None = None,
    on_epoch: Callable[[EpochStats, bool], None] | None = None,
) -> TrainOutcome:
    """Train a full or adapter module on ``data``'s split and save it to ``out``."""
    train_g, train_y = data.part("train")
    val_g, val_y = data.part("val")
    test_g, test_y = data.part("test") if data.split.get("test") else ([], np.zeros(0))
    norm = normalizer_for(train_y)
    start = initial_model(backbone, kind, init, config.seed)
    result = fit(backbone, start.model, train_g, norm.normalize(train_y), val_g,
                 norm.normalize(val_y), config, on_epoch=on_epoch)
    val_pred = norm.denormalize(predict_standardized(backbone, start.model, val_g,
                                                     device=config.device))
    metrics = {"val_mae": float(np.mean(np.abs(val_pred - val_y))),
               "best_epoch": float(result.best_epoch),
               "epochs_run": float(len(result.history)),
               "train_seconds": result.seconds}
    if test_g:
        test_pred = norm.denormalize(predict_standardized(backbone, start.model, test_g,
                                                          device=config.device))
        metrics["test_mae"] = float(np.mean(np.abs(test_pred - test_y)))
        metrics.update(baseline_maes(train_y, test_y))
    ds = data.dataset
    card = ModuleCard(
        name=name or f"{ds.name}-{backbone.name}-{kind}-{data.split_name}",
        backbone=backbone.name,
        backbone_version=backbone.version,
        base_sha256=start.base_sha256,
        kind=kind,
        task=ds.name,
        property=ds.target,
        unit=ds.unit,
        normalizer=norm,
        dataset_size={"train": len(train_g), "val": len(val_g), "test": len(test_g)},
        split=data.split_name,
        metrics=metrics,
        hyperparameters={**config.to_json(), "kind": kind, "init": start.init},
        featurizer=backbone.featurizer().config(),
        software_version=moma.__version__,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        extra={"data_source": ds.source or ds.report.source,
               "records_rejected": len(ds.report.rejected)},
    )
    card = save_module(out, module_state(start.model, kind), card)
    return TrainOutcome(card, result, metrics)
