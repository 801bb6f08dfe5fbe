"""One training run end to end: dataset -> graphs -> model -> module on disk.

This is what ``moma-client train`` and the federated ClientApp call; the CLI only parses options
and shows progress. The test split is touched exactly once, after training, for the card.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import moma
from moma.backbones.base import Backbone
from moma.data.prepared import PreparedData
from moma.data.records import Dataset
from moma.data_overlap.canonical import canonical_form
from moma.data_overlap.fingerprint import DataFingerprint, build_fingerprint
from moma.modules.card import ModuleCard, TargetNormalizer
from moma.modules.store import LoadedModule, save_module
from moma.training.curve import write_learning_curve
from moma.training.loop import EpochStats, TrainConfig, TrainResult, fit, predict_standardized
from moma.training.modeling import initial_model, module_state
from moma.uncertainty.conformal import DEFAULT_COVERAGE, empirical_coverage
from moma.uncertainty.fit import calibrate_model, ranged
from moma.uncertainty.floor import floor_maes
from moma.uncertainty.holdout import take, validation_roles
from moma.uncertainty.ranges import PhysicalRange, range_for


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
    trust: TrustOptions | None = None,
) -> TrainOutcome:
    """Train a full or adapter module on ``data``'s split and save it to ``out``.

    ``on_epoch`` receives the validation MAE (of the selection half that early-stops) in target
    units. After training the module is calibrated on the validation split (intervals on its
    calibration half, domain, range; ``trust``), its learning curve written beside it, and,
    when asked, its training structures fingerprinted on the card.
    """
    trust = trust or TrustOptions()
    train_g, train_y = data.part("train")
    val_g, val_y = data.part("val")
    test_g, test_y = data.part("test") if data.split.get("test") else ([], np.zeros(0))
    norm = normalizer_for(train_y)
    start = initial_model(backbone, kind, init, config.seed)
    progress = (None if on_epoch is None else
                lambda s, imp: on_epoch(replace(s, val_mae=s.val_mae * norm.std), imp))
    # early stopping sees the selection part; the calibration part is kept for the intervals
    roles = validation_roles(len(val_g), config.seed)
    result = fit(backbone, start.model, train_g, norm.normalize(train_y),
                 take(val_g, roles.selection), norm.normalize(take(val_y, roles.selection)),
                 config, on_epoch=progress)
    ds = data.dataset
    physical_range = trust.physical_range or range_for(ds.name, ds.target)
    calibration = calibrate_model(backbone, [start.model], [1.0], [norm], train_graphs=train_g,
                                  val_graphs=val_g, val_y=val_y, folder=out,
                                  coverage=trust.coverage, physical_range=physical_range,
                                  range_policy=trust.range_policy, roles=roles,
                                  device=config.device)
    val_pred = ranged(norm.denormalize(predict_standardized(backbone, start.model, val_g,
                                                            device=config.device)), calibration)
    metrics = {"val_mae": float(np.mean(np.abs(val_pred - val_y))),
               "best_epoch": float(result.best_epoch),
               "epochs_run": float(len(result.history)),
               "train_seconds": result.seconds}
    if test_g:
        test_pred = ranged(norm.denormalize(predict_standardized(backbone, start.model, test_g,
                                                                 device=config.device)),
                           calibration)
        metrics["test_mae"] = float(np.mean(np.abs(test_pred - test_y)))
        metrics.update(baseline_maes(train_y, test_y))
        if calibration.conformal is not None:
            metrics["test_coverage"] = empirical_coverage(calibration.conformal, test_y,
                                                          test_pred)
    val_floor = floor_maes(train_y, val_y)
    metrics["val_mae_train_mean"] = val_floor["train_mean"]
    metrics["val_mae_train_median"] = val_floor["train_median"]
    extra: dict[str, Any] = {"data_source": ds.source or ds.report.source,
                             "records_rejected": len(ds.report.rejected),
                             **calibration.card_extra()}
    if trust.publish_data_fingerprint:
        extra["data_fingerprint"] = training_fingerprint(ds, data.split).to_json()
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
        extra=extra,
    )
    card = save_module(out, module_state(start.model, kind), card)
    write_learning_curve(out, [result.history], norm.std, ds.unit,
                         median_val_mae=val_floor["train_median"], labels=[card.name])
    return TrainOutcome(card, result, metrics)


@dataclass
class TrustOptions:
    """What ``train`` attaches to a module besides its weights (DESIGN.md section 10)."""

    coverage: float = DEFAULT_COVERAGE
    physical_range: PhysicalRange | None = None  # None: the task's declared range, if any
    range_policy: str = "clip"
    publish_data_fingerprint: bool = False


def training_fingerprint(dataset: Dataset, split: dict[str, list[int]]) -> DataFingerprint:
    """The salted fingerprint of every structure the module trained or early-stopped on."""
    used = [*split.get("train", []), *split.get("val", [])]
    return build_fingerprint(canonical_form(dataset.records[i].structure) for i in used)
