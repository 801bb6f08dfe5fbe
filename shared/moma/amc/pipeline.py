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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import moma
from moma.amc.compose import ComposeOptions, Part, fine_tune, plan, predict_parts, start_models
from moma.amc.head_refit import refit_head
from moma.amc.plots import parity_png, weights_png
from moma.atomic_io import write_json
from moma.backbones.base import Backbone
from moma.finite import require_finite_predictions
from moma.modules.card import ModuleCard
from moma.modules.ensemble import ENSEMBLE_FILE, ENSEMBLE_FORMAT
from moma.modules.store import LoadedModule, save_module
from moma.training.loop import EpochStats
from moma.training.modeling import module_state
from moma.training.run import PreparedData, baseline_maes, normalizer_for


@dataclass
class ComposeResult:
    report: dict[str, Any]
    out: Path


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
) -> ComposeResult:
    """Compose for ``data``'s training split and write the report, module and figures to ``out``."""
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
    norm = normalizer_for(train_y)

    tick = time.perf_counter()
    chosen = plan(backbone, candidates, train_g, train_y, options, seed=seed, on_module=on_module)
    clock["select_s"] = time.perf_counter() - tick
    if chosen.selection is not None:
        clock.update({f"select_{k}": v for k, v in chosen.selection.timings.items()})

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
    parts = fine_tune(backbone, starts, (train_g, norm.normalize(train_y)),
                      (val_g, norm.normalize(val_y)), config, on_epoch)
    clock["fine_tune_s"] = time.perf_counter() - tick

    val_pred = norm.denormalize(predict_parts(backbone, parts, val_g, config.device))
    test_pred = norm.denormalize(predict_parts(backbone, parts, test_g, config.device))
    require_finite_predictions(range(len(val_pred)), val_pred, "the composed model (validation)")
    require_finite_predictions(range(len(test_pred)), test_pred, "the composed model (test)")
    metrics = {
        "val_mae": float(np.mean(np.abs(val_pred - val_y))),
        "test_mae": float(np.mean(np.abs(test_pred - test_y))),
        **baseline_maes(train_y, test_y),
    }
    ds = data.dataset
    out.mkdir(parents=True, exist_ok=True)
    card_base = {
        "backbone": backbone.name, "backbone_version": backbone.version, "kind": options.kind,
        "task": ds.name, "property": ds.target, "unit": ds.unit, "normalizer": norm,
        "dataset_size": {"train": len(train_g), "val": len(val_g), "test": len(test_g)},
        "split": data.split_name, "featurizer": backbone.featurizer().config(),
        "software_version": moma.__version__,
        "hyperparameters": {**config.to_json(), "strategy": options.strategy,
                            "merge": chosen.merge, "k": options.k, "head": options.head,
                            "knn_layer": options.knn_layer,
                            "threshold": options.threshold, "train_size": train_size},
    }
    saved = _save_parts(out / "module", parts, card_base, metrics, options, chosen.merge)
    selection_json = chosen.selection.to_json() if chosen.selection else []
    report: dict[str, Any] = {
        "format": "moma-compose-report/1",
        "task": ds.name, "target": ds.target, "unit": ds.unit, "split": data.split_name,
        "backbone": backbone.name, "kind": options.kind, "strategy": options.strategy,
        "merge": chosen.merge, "merge_reason": chosen.reason, "seed": seed,
        "head": options.head, "head_refits": head_refits,
        "train_size": len(train_g), "n_val": len(val_g), "n_test": len(test_g),
        "train_size_requested": train_size, "train_size_note": capped,
        "candidates": selection_json or [
            {"name": m.card.name, "module_id": m.module_id, "task": m.card.task}
            for m in candidates],
        "composed_from": [{"name": m.card.name, "module_id": m.module_id, "weight": float(w)}
                          for m, w in zip(chosen.modules, chosen.weights, strict=True)],
        "ensemble_proxy_mae": (chosen.selection.ensemble_proxy_mae
                               if chosen.selection else None),
        "solver": chosen.selection.solver if chosen.selection else None,
        "metrics": metrics,
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
    parity_png(out / "parity.png", test_y, test_pred, ds.unit,
               f"{ds.name}: {options.strategy}/{chosen.merge}")
    return ComposeResult(report, out)


def _save_parts(folder: Path, parts: Sequence[Part], card_base: dict[str, Any],
                metrics: dict[str, float], options: ComposeOptions, merge: str) -> dict[str, Any]:
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    saved = []
    for i, part in enumerate(parts):
        target = folder if len(parts) == 1 else folder / f"part{i}"
        name = f"{card_base['task']}-{options.strategy}-{merge}"
        card = ModuleCard(name=name if len(parts) == 1 else f"{name}-part{i}",
                          base_sha256=part.base_sha256, metrics=metrics, created=created,
                          parents=part.parents, extra={"ensemble_weight": part.weight},
                          **card_base)
        card = save_module(target, module_state(part.model, options.kind), card)
        saved.append({"path": str(target), "module_id": card.module_id, "weight": part.weight})
    if len(parts) > 1:
        write_json(folder / ENSEMBLE_FILE, {"format": ENSEMBLE_FORMAT, "parts": saved})
    return {"path": str(folder), "parts": saved}
