"""Composition: from a strategy's plan (AMC weights, or a baseline) to fine-tuned models.

The strategies (``amc``, ``select-average``, ``all-average``, ``random``, ``backbone-ft``,
``scratch``) and merges (``auto``, ``average``, ``top1``, ``ensemble``) are registered in
:mod:`moma.amc.registry`, one file each (DESIGN.md section 5); this module dispatches to them
and holds what they share: building a model from module states and fine-tuning its parts.

A fresh head is attached and the composed model fine-tuned on the training split with early
stopping on the validation split; the test split is used once, for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moma.amc.merge import average_parameters
from moma.amc.merges import check_shared_base, merge_inputs
from moma.amc.plan import Plan, PlanInput, Start, StartInput
from moma.amc.registry import check_knn_layer, get_head, get_merge, get_strategy
from moma.backbones.adapters import insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import MomaError
from moma.modules.loading import find_base
from moma.modules.store import LoadedModule
from moma.training.loop import EpochStats, TrainConfig, fit, predict_standardized


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
    knn_layer: str = "pooled"  # or "head": what feeds the kNN proxy (registry.KNN_LAYERS)


@dataclass
class Part:
    """One fine-tuned model of the composition (a single one unless the merge is an ensemble)."""

    model: BackboneModel
    weight: float
    parents: list[dict[str, Any]]
    base_sha256: str
    history: list[EpochStats]


def check_options(options: ComposeOptions) -> None:
    """Refuse unknown names and combinations a strategy does not support (before any work)."""
    strategy = get_strategy(options.strategy)
    get_merge(options.merge)
    get_head(options.head)
    check_knn_layer(options.knn_layer)
    if options.kind not in strategy.kinds:
        raise MomaError(f"--strategy {strategy.name} trains every weight: use --kind full"
                        if strategy.kinds == ("full",) else
                        f"--strategy {strategy.name} does not support --kind {options.kind}")


def plan(backbone: Backbone, candidates: Sequence[LoadedModule], train_graphs: Sequence[Any],
         train_y: np.ndarray, options: ComposeOptions, *, seed: int,
         on_module: Callable[[int, int], None] | None = None) -> Plan:
    """Choose the starting modules and weights for ``options.strategy``, and the merge."""
    get_merge(options.merge)
    get_head(options.head)
    strategy = get_strategy(options.strategy)
    chosen = strategy.plan(PlanInput(backbone, candidates, train_graphs, train_y, options, seed,
                                     on_module))
    if not strategy.needs_modules:
        return chosen
    merge, reason = choose_merge(chosen.modules, options.merge)
    return Plan(chosen.modules, np.asarray(chosen.weights, dtype=np.float64), merge, reason,
                chosen.selection)


def choose_merge(chosen: Sequence[LoadedModule], requested: str) -> tuple[str, str]:
    """The merge used for ``chosen`` when ``requested`` was asked for, and why."""
    if len(chosen) == 1 and requested in ("auto", "average"):
        return "top1", "one module selected: it is used as is (average of one)"
    merge = get_merge(requested)
    if merge.resolve is not None:
        return merge.resolve(chosen)
    if merge.needs_shared_base:
        check_shared_base(chosen)
        return requested, f"requested --merge {requested}; the modules share one base"
    return requested, f"requested --merge {requested}"


def start_models(backbone: Backbone, the_plan: Plan, options: ComposeOptions,
                 *, seed: int) -> list[Start]:
    """Initial models (fresh heads unless ``--head inherit``) with weight, parents and base."""
    torch.manual_seed(seed)
    parents = [{"module_id": m.module_id, "name": m.card.name, "weight": float(w)}
               for m, w in zip(the_plan.modules, the_plan.weights, strict=True)]
    inp = StartInput(backbone, the_plan, options, parents)
    strategy = get_strategy(options.strategy)
    if strategy.start is not None:
        return strategy.start(inp)
    start = get_merge(the_plan.merge).start
    if start is None:
        raise MomaError(f"merge {the_plan.merge!r} cannot build a model; use average, top1 or "
                        "ensemble")
    return start(inp)


def with_state(backbone: Backbone, state: dict[str, Any], kind: str,
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


def from_modules(backbone: Backbone, modules: Sequence[LoadedModule], weights: np.ndarray,
                  options: ComposeOptions) -> BackboneModel:
    probe = backbone.build()
    inherit = options.head == "inherit"
    head = () if inherit else tuple(probe.head_prefixes)
    merged = average_parameters(merge_inputs(modules), weights, threshold=0.0,
                                skip_prefixes=head)
    if options.kind == "full":
        full = {**probe.state_dict(), **merged}
        return with_state(backbone, full, "full", None, keep_head=inherit)
    base = find_base(backbone, modules[0].card.base_sha256,
                     [modules[0].path.parent, *options.base_dirs])
    return with_state(backbone, base, "adapter", merged, keep_head=inherit)


def fine_tune(backbone: Backbone, starts: Sequence[Start],
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
