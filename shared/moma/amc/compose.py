"""Composition strategies: from AMC weights (or a baseline) to a fine-tuned model for the task.

Strategies (DESIGN.md section 5):
- ``amc``: the modules AMC weighs above the threshold, with their renormalized weights;
- ``select-average``: the same modules, uniform weights (ablation: are the weights needed?);
- ``all-average``: every candidate, uniform (ablation: is selection needed?);
- ``random``: as many random candidates as AMC selected, uniform (ablation);
- ``backbone-ft``: the shared base alone, fine-tuned (the baseline AMC has to beat);
- ``scratch``: random initialization (the floor of learning anything at all).

Merges of the chosen modules:
- ``average``: ``theta = sum_j w_j theta_j`` (the paper's method), only for modules sharing one
  base: measured, averaging separately trained models collapses their embeddings;
- ``top1``: the highest-weight module alone;
- ``ensemble``: every chosen module fine-tuned with its own head, predictions combined with
  the AMC weights (works across bases, costs one fine-tune per part);
- ``auto`` (default): ``average`` when the chosen modules share a base, else ``top1``.

A fresh head is attached and the composed model fine-tuned on the training split with early
stopping on the validation split; the test split is used once, for the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moma.amc.merge import MergeInput, average_parameters, check_mergeable, select_weights
from moma.amc.selection import Selection, select
from moma.backbones.adapters import insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import IncompatibleModulesError, MomaError
from moma.modules.loading import find_base
from moma.modules.store import LoadedModule
from moma.training.loop import EpochStats, TrainConfig, fit, predict_standardized

STRATEGIES = ("amc", "select-average", "all-average", "random", "backbone-ft", "scratch")
MERGES = ("auto", "average", "top1", "ensemble")
HEADS = ("fresh", "inherit")


@dataclass
class ComposeOptions:
    strategy: str = "amc"
    merge: str = "auto"
    kind: str = "full"
    k: int = 5
    threshold: float = 1e-3
    solver: str = "CLARABEL"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=60, batch_size=32, lr=8e-5, head_lr_factor=10.0, patience=10))
    base_dirs: Sequence[Path] = ()
    base_module: LoadedModule | None = None
    head: str = "fresh"  # or "inherit": keep the composed modules' head, refit it (head_refit)
    knn_layer: str = "pooled"  # or "head": what feeds the kNN proxy (selection.KNN_LAYERS)


@dataclass
class Plan:
    """Which modules start the composed model, with which weights, merged how, and why."""

    modules: list[LoadedModule]
    weights: np.ndarray
    merge: str
    reason: str
    selection: Selection | None = None


@dataclass
class Part:
    """One fine-tuned model of the composition (a single one unless the merge is an ensemble)."""

    model: BackboneModel
    weight: float
    parents: list[dict[str, Any]]
    base_sha256: str
    history: list[EpochStats]


def plan(backbone: Backbone, candidates: Sequence[LoadedModule], train_graphs: Sequence[Any],
         train_y: np.ndarray, options: ComposeOptions, *, seed: int,
         on_module: Callable[[int, int], None] | None = None) -> Plan:
    """Choose the starting modules and weights for ``options.strategy``."""
    if options.strategy not in STRATEGIES:
        raise MomaError(f"unknown strategy {options.strategy!r}; choose one of "
                        + ", ".join(STRATEGIES))
    if options.merge not in MERGES:
        raise MomaError(f"unknown merge {options.merge!r}; choose one of " + ", ".join(MERGES))
    if options.head not in HEADS:
        raise MomaError(f"unknown head {options.head!r}; choose one of " + ", ".join(HEADS))
    if options.strategy in ("backbone-ft", "scratch"):
        return Plan([], np.zeros(0), "none", f"{options.strategy}: no modules composed")
    selection = None
    if options.strategy == "all-average":
        chosen = list(candidates)
        weights = np.full(len(chosen), 1.0 / len(chosen))
    else:
        selection = select(backbone, candidates, train_graphs, train_y, k=options.k,
                           solver=options.solver, device=options.train.device,
                           base_dirs=options.base_dirs, layer=options.knn_layer,
                           on_module=on_module)
        kept = select_weights(selection.weights, options.threshold)
        picked = [i for i in np.argsort(-kept) if kept[i] > 0]
        if options.strategy == "amc":
            chosen, weights = [candidates[i] for i in picked], kept[picked]
        elif options.strategy == "select-average":
            chosen, weights = [candidates[i] for i in picked], np.full(len(picked), 1 / len(picked))
        else:  # random
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(candidates), size=len(picked), replace=False)
            chosen, weights = [candidates[i] for i in idx], np.full(len(idx), 1 / len(idx))
    merge, reason = _choose_merge(chosen, options.merge)
    return Plan(chosen, np.asarray(weights, dtype=np.float64), merge, reason, selection)


def _merge_inputs(modules: Sequence[LoadedModule]) -> list[MergeInput]:
    def loader(module: LoadedModule) -> Callable[[], dict[str, torch.Tensor]]:
        return lambda: module.state

    return [MergeInput(m.card.name, m.card.backbone, m.card.base_sha256, loader(m))
            for m in modules]


def _choose_merge(chosen: Sequence[LoadedModule], requested: str) -> tuple[str, str]:
    if len(chosen) == 1 and requested in ("auto", "average"):
        return "top1", "one module selected: it is used as is (average of one)"
    if requested == "average":
        check_mergeable(_merge_inputs(chosen))
        return "average", "requested --merge average; the modules share one base"
    if requested != "auto":
        return requested, f"requested --merge {requested}"
    try:
        check_mergeable(_merge_inputs(chosen))
    except IncompatibleModulesError as exc:
        return "top1", f"modules do not share a base ({exc}); fine-tuning the top-weighted one"
    return "average", "the selected modules share one base: weighted parameter average"


def start_models(backbone: Backbone, the_plan: Plan, options: ComposeOptions,
                 *, seed: int) -> list[tuple[BackboneModel, float, list[dict[str, Any]], str]]:
    """Initial models (fresh heads) with their weight, parents and base sha256."""
    torch.manual_seed(seed)
    kind = options.kind
    parents = [{"module_id": m.module_id, "name": m.card.name, "weight": float(w)}
               for m, w in zip(the_plan.modules, the_plan.weights, strict=True)]
    if options.strategy == "scratch":
        model = backbone.build()
        if kind == "adapter":
            raise MomaError("--strategy scratch trains every weight: use --kind full")
        from moma.modules.store import sha256_state

        return [(model, 1.0, [], sha256_state(model.state_dict()))]
    if options.strategy == "backbone-ft":
        state, base = _base_state(backbone, options)
        return [(_with_state(backbone, state, kind, None), 1.0, [], base)]
    if the_plan.merge == "ensemble":
        return [(_from_modules(backbone, [m], np.ones(1), options), float(w),
                 [parents[i]], m.module_id if kind == "full" else m.card.base_sha256)
                for i, (m, w) in enumerate(zip(the_plan.modules, the_plan.weights, strict=True))]
    if the_plan.merge == "top1":
        top = int(np.argmax(the_plan.weights))
        module = the_plan.modules[top]
        base = module.module_id if kind == "full" else module.card.base_sha256
        return [(_from_modules(backbone, [module], np.ones(1), options), 1.0, parents, base)]
    model = _from_modules(backbone, the_plan.modules, the_plan.weights, options)
    return [(model, 1.0, parents, the_plan.modules[0].card.base_sha256)]


def _base_state(backbone: Backbone, options: ComposeOptions) -> tuple[dict[str, Any], str]:
    if options.base_module is not None:
        return options.base_module.state, options.base_module.module_id
    pretrained = backbone.pretrained_base()
    if pretrained is None:
        raise MomaError(f"backbone-ft with {backbone.name} needs the base module: pass "
                        "--base-module (e.g. the imported mp_eform module)")
    return pretrained


def _with_state(backbone: Backbone, state: dict[str, Any], kind: str,
                adapters: dict[str, Any] | None, *, keep_head: bool = False) -> BackboneModel:
    model = backbone.build()
    model.load_state_dict(state, strict=True)
    if not keep_head:
        model.reset_head()
    if kind == "adapter":
        insert_adapters(model)
        if adapters:
            current = model.state_dict()
            current.update({k: v for k, v in adapters.items()
                            if keep_head or not model.is_head_key(k)})
            model.load_state_dict(current, strict=True)
    return model


def _from_modules(backbone: Backbone, modules: Sequence[LoadedModule], weights: np.ndarray,
                  options: ComposeOptions) -> BackboneModel:
    probe = backbone.build()
    inherit = options.head == "inherit"
    head = () if inherit else tuple(probe.head_prefixes)
    merged = average_parameters(_merge_inputs(modules), weights, threshold=0.0,
                                skip_prefixes=head)
    if options.kind == "full":
        full = {**probe.state_dict(), **merged}
        return _with_state(backbone, full, "full", None, keep_head=inherit)
    base = find_base(backbone, modules[0].card.base_sha256,
                     [modules[0].path.parent, *options.base_dirs])
    return _with_state(backbone, base, "adapter", merged, keep_head=inherit)


def fine_tune(backbone: Backbone, starts: list[tuple[BackboneModel, float, list[dict[str, Any]],
                                                     str]],
              train: tuple[list[Any], np.ndarray], val: tuple[list[Any], np.ndarray],
              config: TrainConfig,
              on_epoch: Callable[[int, EpochStats, bool], None] | None = None) -> list[Part]:
    """Fine-tune every part on standardized targets; returns them with their histories."""
    parts = []
    for i, (model, weight, parents, base) in enumerate(starts):
        callback = (lambda s, imp, i=i: on_epoch(i, s, imp)) if on_epoch else None
        result = fit(backbone, model, train[0], train[1], val[0], val[1], config,
                     on_epoch=callback)
        parts.append(Part(model, weight, parents, base, result.history))
    return parts


def predict_parts(backbone: Backbone, parts: Sequence[Part], graphs: Sequence[Any],
                  device: str) -> np.ndarray:
    """Standardized predictions of the composition: the weighted sum over its parts."""
    total = sum(p.weight for p in parts)
    return sum((p.weight / total) * predict_standardized(backbone, p.model, graphs, device=device)
               for p in parts)  # type: ignore[return-value]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
