"""A compose run end to end: plan, merge, fine-tune, evaluate, save, report.

Everything runs on the data owner's machine; the only inputs from elsewhere are modules. The
report states every number a reader needs to judge the result: module weights and proxy
errors, the merge chosen and why, validation and test MAE, the train-mean and train-median
predictors (the floor any model must clear) and the time of each stage.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import moma
from moma.amc.compose import (
    ComposeOptions,
    Part,
    fine_tune,
    guard_baseline,
    plan,
    predict_parts,
    same_computation_notes,
    start_models,
)
from moma.amc.guard import decide
from moma.amc.head_refit import refit_head
from moma.amc.plots import parity_png, weights_png
from moma.amc.registry import get_strategy
from moma.atomic_io import write_json
from moma.backbones.base import Backbone
from moma.data.prepared import PreparedData
from moma.finite import require_finite_predictions
from moma.modules.card import ModuleCard, TargetNormalizer
from moma.modules.ensemble import ENSEMBLE_FILE, ENSEMBLE_FORMAT
from moma.modules.store import LoadedModule, save_module
from moma.training.curve import write_learning_curve
from moma.training.loop import EpochStats, embed_graphs
from moma.training.modeling import module_state
from moma.training.run import baseline_maes, normalizer_for
from moma.uncertainty.calibration import Calibration
from moma.uncertainty.conformal import empirical_coverage
from moma.uncertainty.fit import calibrate_model, ranged
from moma.uncertainty.floor import floor_report
from moma.uncertainty.holdout import take, validation_roles
from moma.uncertainty.ranges import PhysicalRange, apply_range, range_for

if TYPE_CHECKING:
    from moma.api.predict import Model


@dataclass
class ComposeResult:
    """A finished compose: its report (also in ``out/report.json``) and where the composed
    module, ``weights.png`` and ``parity.png`` were written."""

    report: dict[str, Any]
    out: Path
    base_dirs: tuple[Path, ...] = ()
    """Where the composed module's base may be found (adapter compositions)."""

    @property
    def metrics(self) -> dict[str, float]:
        """Validation and test MAE beside the train-mean and train-median predictors."""
        return dict(self.report["metrics"])

    @property
    def weights(self) -> dict[str, float]:
        """Each composed module's weight, by module name."""
        return {entry["name"]: entry["weight"] for entry in self.report["composed_from"]}

    @property
    def module_path(self) -> Path:
        """The composed module folder (an ensemble folder for ``--merge ensemble``)."""
        return Path(self.report["module"]["path"])

    def model(self, device: str = "cpu") -> Model:
        """The composed model, loaded and ready to predict (a :class:`moma.api.Model`)."""
        from moma.api.predict import load

        return load(self.module_path, base_dirs=self.base_dirs, device=device)


def train_size_note(train_idx: list[int], size: int | None) -> str | None:
    """What to tell the user when ``--train-size`` asks for more than the split holds."""
    if size is None or size <= len(train_idx):
        return None
    return (f"--train-size {size} is larger than the training split ({len(train_idx)} "
            f"structures): capped at {len(train_idx)}")


def subsample_train(train_idx: list[int], size: int | None, seed: int) -> list[int]:
    """Few-shot: a seeded subset of the training split (the whole split when size is None)."""
    if size is None or size >= len(train_idx):
        return list(train_idx)
    if size < 2:
        from moma.errors import MomaError

        raise MomaError("--train-size must be at least 2")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(train_idx, size=size, replace=False).tolist())


def run_compose(
    data: PreparedData,
    backbone: Backbone,
    candidates: Sequence[LoadedModule],
    options: ComposeOptions,
    out: Path,
    *,
    seed: int = 0,
    train_size: int | None = None,
    on_module: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[int, EpochStats, bool], None] | None = None,
    screening: dict[str, Any] | None = None,
) -> ComposeResult:
    """Compose for ``data``'s training split and write the report, module and figures to ``out``.

    ``on_epoch(part, stats, improved)`` receives the validation MAE in target units; ``part`` is
    -1 for the guard's baseline. ``screening`` (:meth:`moma.amc.screening.Screening.report_json`)
    lists the candidates left out before this call with their reasons, for the report.
    """
    clock: dict[str, float] = {"featurize_s": data.featurize_seconds}
    targets = data.dataset.targets
    train_idx = subsample_train(data.split["train"], train_size, seed)
    capped = train_size_note(data.split["train"], train_size)
    if capped:
        logging.getLogger("moma").warning(capped)
    train_g = [data.graphs[i] for i in train_idx]
    train_y = targets[train_idx]
    val_g, val_y = data.part("val")
    test_g, test_y = data.part("test")
    # choices (early stopping, the guard) see the selection part only: the calibration part
    # stays exchangeable with new structures for the conformal interval
    roles = validation_roles(len(val_g), seed)
    sel_g, sel_y = take(val_g, roles.selection), take(val_y, roles.selection)
    norm = normalizer_for(train_y)
    ds = data.dataset
    physical_range = options.physical_range or range_for(ds.name, ds.target)

    tick = time.perf_counter()
    chosen = plan(backbone, candidates, train_g, train_y, options, seed=seed, on_module=on_module)
    clock["select_s"] = time.perf_counter() - tick
    if chosen.selection is not None:
        clock.update({f"select_{k}": v for k, v in chosen.selection.timings.items()})
    notes = same_computation_notes(options.strategy, chosen, len(candidates))

    tick = time.perf_counter()
    starts = start_models(backbone, chosen, options, seed=seed)
    head_refits: list[dict[str, float]] = []
    if options.head == "inherit" and chosen.modules:
        for model, *_ in starts:
            a, b = refit_head(backbone, model, train_g, norm.normalize(train_y),
                              options.train.device)
            head_refits.append({"scale": a, "offset": b})
    clock["merge_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    config = options.train
    in_units = _target_units(on_epoch, norm.std)
    train_std = (train_g, norm.normalize(train_y))
    val_std = (sel_g, norm.normalize(sel_y))
    parts = fine_tune(backbone, starts, train_std, val_std, config, in_units)
    clock["fine_tune_s"] = time.perf_counter() - tick
    composed_label = _composed_label(options, chosen.merge)
    curves = [(f"{composed_label} part {i}" if len(parts) > 1 else composed_label, p.history)
              for i, p in enumerate(parts)]

    guard_json: dict[str, Any] = {"ran": False}
    if options.guard:
        baseline, why_not = guard_baseline(backbone, chosen, candidates, options, seed=seed)
        if baseline is None:
            guard_json["why_not"] = why_not
        else:
            tick = time.perf_counter()
            guard_parts = fine_tune(backbone, baseline.starts, train_std, val_std, config,
                                    (lambda _i, s, imp: in_units(-1, s, imp)) if in_units
                                    else None)
            clock["guard_s"] = time.perf_counter() - tick
            curves.append((f"guard: {baseline.label}", guard_parts[0].history))
            decision = decide(composed_label, _val_mae(backbone, parts, norm, sel_g, sel_y,
                                                       physical_range, options),
                              baseline.label, _val_mae(backbone, guard_parts, norm, sel_g,
                                                       sel_y, physical_range, options))
            guard_json = decision.to_json(ds.unit)
            if decision.kept == "baseline":
                parts = guard_parts
    elif get_strategy(options.strategy).needs_modules:
        guard_json["why_not"] = "--no-guard: the composition was not compared with its baseline"

    out.mkdir(parents=True, exist_ok=True)
    models = [p.model for p in parts]
    weights = [p.weight for p in parts]
    calibration = calibrate_model(backbone, models, weights, [norm] * len(parts),
                                  train_graphs=train_g, val_graphs=val_g, val_y=val_y,
                                  folder=out / "module", coverage=options.coverage,
                                  physical_range=physical_range,
                                  range_policy=options.range_policy, roles=roles,
                                  device=config.device)
    val_raw = norm.denormalize(predict_parts(backbone, parts, val_g, config.device))
    val_pred = ranged(val_raw, calibration)
    # the test split, read once, for the kept model only
    test_raw = norm.denormalize(predict_parts(backbone, parts, test_g, config.device))
    test_pred = ranged(test_raw, calibration)
    require_finite_predictions(range(len(val_pred)), val_pred, "the composed model (validation)")
    require_finite_predictions(range(len(test_pred)), test_pred, "the composed model (test)")
    metrics = {
        "val_mae": float(np.mean(np.abs(val_pred - val_y))),
        "val_mae_selection": float(np.mean(np.abs(take(val_pred, roles.selection) - sel_y))),
        "test_mae": float(np.mean(np.abs(test_pred - test_y))),
        **baseline_maes(train_y, test_y),
    }
    floors = floor_report(train_y, val_y, metrics["val_mae"], test_y, metrics["test_mae"],
                          ds.unit)
    metrics["val_mae_train_mean"] = floors["val"]["train_mean"]
    metrics["val_mae_train_median"] = floors["val"]["train_median"]
    uncertainty = _uncertainty_json(calibration, test_y, test_pred, test_raw, physical_range)
    uncertainty["validation_roles"] = roles.to_json()
    if calibration.domain is not None and len(test_y):
        lead = max(parts, key=lambda p: p.weight).model
        scores = calibration.domain.score(embed_graphs(backbone, lead, test_g,
                                                       device=config.device))
        uncertainty.update(domain_on_test(calibration.domain.outside(scores), test_y, test_pred))
    if len(test_y):
        metrics["test_coverage"] = uncertainty["test_coverage"]
    card_base = {
        "backbone": backbone.name, "backbone_version": backbone.version, "kind": options.kind,
        "task": ds.name, "property": ds.target, "unit": ds.unit, "normalizer": norm,
        "dataset_size": {"train": len(train_g), "val": len(val_g), "test": len(test_g)},
        "split": data.split_name, "featurizer": backbone.featurizer().config(),
        "software_version": moma.__version__,
        "hyperparameters": {**config.to_json(), "strategy": options.strategy,
                            "merge": chosen.merge, "k": options.k, "head": options.head,
                            "knn_layer": options.knn_layer, "guard": options.guard,
                            "kept": guard_json.get("kept", "composed"),
                            "threshold": options.threshold, "train_size": train_size},
    }
    saved = _save_parts(out / "module", parts, card_base, metrics, options, chosen.merge,
                        calibration.card_extra())
    write_learning_curve(out / "module", [h for _, h in curves], norm.std, ds.unit,
                         median_val_mae=floors["val"]["train_median"],
                         labels=[label for label, _ in curves])
    selection_json = chosen.selection.to_json() if chosen.selection else []
    report: dict[str, Any] = {
        "format": "moma-compose-report/1",
        "task": ds.name, "target": ds.target, "unit": ds.unit, "split": data.split_name,
        "backbone": backbone.name, "kind": options.kind, "strategy": options.strategy,
        "merge": chosen.merge, "merge_reason": chosen.reason, "seed": seed,
        "notes": notes,
        "head": options.head, "head_refits": head_refits,
        "train_size": len(train_g), "n_val": len(val_g), "n_test": len(test_g),
        "train_size_requested": train_size, "train_size_note": capped,
        "candidates": selection_json or [
            {"name": m.card.name, "module_id": m.module_id, "task": m.card.task}
            for m in candidates],
        "skipped": [],
        **(screening or {}),
        "composed_from": [{"name": m.card.name, "module_id": m.module_id, "weight": float(w)}
                          for m, w in zip(chosen.modules, chosen.weights, strict=True)],
        "ensemble_proxy_mae": (chosen.selection.ensemble_proxy_mae
                               if chosen.selection else None),
        "solver": chosen.selection.solver if chosen.selection else None,
        "guard": guard_json,
        "metrics": metrics,
        "floor": floors,
        "flags": floors["flags"],
        "uncertainty": uncertainty,
        "epochs_run": [len(p.history) for p in parts],
        "timings": clock,
        "module": saved,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "software_version": moma.__version__,
    }
    write_json(out / "report.json", report)
    if chosen.selection is not None:
        sel = chosen.selection
        weights_png(out / "weights.png", sel.names, sel.weights, sel.proxy_mae,
                    f"AMC weights for {ds.name} ({len(train_g)} training structures)")
    elif chosen.modules:
        weights_png(out / "weights.png", [m.card.name for m in chosen.modules], chosen.weights,
                    np.zeros(len(chosen.modules)), f"{options.strategy} weights for {ds.name}")
    kept = guard_json.get("kept", "composed")
    parity_png(out / "parity.png", test_y, test_pred, ds.unit,
               f"{ds.name}: {options.strategy}/{chosen.merge}"
               + (" (guard kept the baseline)" if kept == "baseline" else ""))
    return ComposeResult(report, out, tuple(Path(d) for d in options.base_dirs))


def _composed_label(options: ComposeOptions, merge: str) -> str:
    if not get_strategy(options.strategy).needs_modules:
        return options.strategy
    return f"the {options.strategy} composition ({merge})"


def _target_units(on_epoch: Callable[[int, EpochStats, bool], None] | None,
                  std: float) -> Callable[[int, EpochStats, bool], None] | None:
    """The progress callback with the validation MAE converted to target units."""
    if on_epoch is None:
        return None
    callback = on_epoch

    def convert(part: int, stats: EpochStats, improved: bool) -> None:
        callback(part, replace(stats, val_mae=stats.val_mae * std), improved)

    return convert


def _val_mae(backbone: Backbone, parts: Sequence[Part], norm: TargetNormalizer,
             val_g: Sequence[Any], val_y: np.ndarray, physical_range: PhysicalRange | None,
             options: ComposeOptions) -> float:
    pred = norm.denormalize(predict_parts(backbone, parts, val_g, options.train.device))
    pred = apply_range(pred, physical_range, options.range_policy).values
    return float(np.mean(np.abs(pred - val_y)))


def _uncertainty_json(calibration: Calibration, test_y: np.ndarray, test_pred: np.ndarray,
                      test_raw: np.ndarray, physical_range: PhysicalRange | None
                      ) -> dict[str, Any]:
    """What the report says about intervals, domain and range (coverage measured on test)."""
    interval = calibration.conformal
    out: dict[str, Any] = calibration.card_extra()["uncertainty"]
    if interval is not None and len(test_y):
        out["test_coverage"] = empirical_coverage(interval, test_y, test_pred)
    outcome = apply_range(test_raw, physical_range, calibration.range_policy)
    out["physical_range"] = physical_range.to_json() if physical_range else None
    out["range_policy"] = calibration.range_policy
    out["test_outside_range"] = outcome.count
    if physical_range is not None:
        out["range_sentence"] = outcome.sentence(physical_range)
    return out


def domain_on_test(outside: np.ndarray, test_y: np.ndarray,
                   test_pred: np.ndarray) -> dict[str, Any]:
    """How many test structures the domain flags, and the test MAE inside and outside it (the
    check that the flag means something: flagged structures should be predicted worse)."""
    errors = np.abs(test_pred - test_y)
    return {"test_outside_domain": int(outside.sum()),
            "test_mae_in_domain": float(errors[~outside].mean()) if (~outside).any() else None,
            "test_mae_outside_domain": float(errors[outside].mean()) if outside.any() else None}


def _save_parts(folder: Path, parts: Sequence[Part], card_base: dict[str, Any],
                metrics: dict[str, float], options: ComposeOptions, merge: str,
                extra: dict[str, Any]) -> dict[str, Any]:
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    saved = []
    for i, part in enumerate(parts):
        target = folder if len(parts) == 1 else folder / f"part{i}"
        name = f"{card_base['task']}-{options.strategy}-{merge}"
        card = ModuleCard(name=name if len(parts) == 1 else f"{name}-part{i}",
                          base_sha256=part.base_sha256, metrics=metrics, created=created,
                          parents=part.parents,
                          extra={"ensemble_weight": part.weight, **extra},
                          **card_base)
        card = save_module(target, module_state(part.model, options.kind), card)
        saved.append({"path": str(target), "module_id": card.module_id, "weight": part.weight})
    if len(parts) > 1:
        write_json(folder / ENSEMBLE_FILE, {"format": ENSEMBLE_FORMAT, "parts": saved})
    return {"path": str(folder), "parts": saved}
