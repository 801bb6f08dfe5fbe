"""Composition: from a strategy's plan (AMC weights, or a baseline) to fine-tuned models.

The strategies (``amc``, ``select-average``, ``all-average``, ``random``, ``backbone-ft``,
``scratch``) and merges (``auto``, ``average``, ``top1``, ``ensemble``) are registered in
:mod:`moma.amc.registry`, one file each (DESIGN.md section 5); this module dispatches to them
and holds what they share: building a model from module states and fine-tuning its parts.

A fresh head is attached and the composed model fine-tuned on the training split with early
stopping on the selection half of the validation split (the other half calibrates the
intervals, :mod:`moma.uncertainty.holdout`); the test split is used once, for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moma.amc.guard import GuardBaseline, best_single_index
from moma.amc.merge import average_parameters
from moma.amc.merges import check_shared_base, merge_inputs, module_base
from moma.amc.plan import Plan, PlanInput, Start, StartInput
from moma.amc.registry import get_head, get_merge, get_strategy
from moma.backbones.adapters import insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import MomaError
from moma.modules.loading import find_base
from moma.modules.store import LoadedModule
from moma.training.loop import EpochStats, TrainConfig, fit, predict_standardized
from moma.uncertainty.ranges import PhysicalRange


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
    guard: bool = True  # also fine-tune the base (or best single module); keep the better start
    coverage: float = 0.9  # conformal interval level (moma.uncertainty.conformal)
    physical_range: PhysicalRange | None = None  # None: the task's declared range, if any
    range_policy: str = "clip"  # or "flag" (moma.uncertainty.ranges)


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
    """Choose the starting modules and weights for ``options.strategy``, and the merge."""
    get_merge(options.merge)
    get_head(options.head)
    strategy = get_strategy(options.strategy)
    chosen = strategy.plan(PlanInput(backbone, candidates, train_graphs, train_y, options, seed,
                                     on_module))
    if not strategy.needs_modules:
        return chosen
    merge, reason = choose_merge(chosen.modules, options.merge, np.asarray(chosen.weights))
    return Plan(chosen.modules, np.asarray(chosen.weights, dtype=np.float64), merge, reason,
                chosen.selection)


def choose_merge(chosen: Sequence[LoadedModule], requested: str,
                 weights: np.ndarray | None = None) -> tuple[str, str]:
    """The merge used for ``chosen`` when ``requested`` was asked for, and one plain sentence
    saying what was done and why."""
    n = len(chosen)
    w = np.ones(n) / max(n, 1) if weights is None else np.asarray(weights, dtype=np.float64)
    top = chosen[int(np.argmax(w))] if n else None
    top_s = f"{top.card.name} (weight {float(np.max(w)):.2f})" if top else ""
    if n == 1 and requested in ("auto", "average", "ensemble"):
        return "top1", (f"One module was selected, {chosen[0].card.name}; it is fine-tuned "
                        "alone (average, top1 and ensemble are the same computation for one "
                        "module).")
    merge = get_merge(requested)
    if merge.resolve is not None:
        return merge.resolve(chosen, top_s)
    if merge.needs_shared_base:
        check_shared_base(chosen)
        return requested, (f"Averaged the parameters of the {n} selected modules with their "
                           f"weights, as requested with --merge {requested} (they share one "
                           "base).")
    if requested == "top1":
        return "top1", (f"Fine-tuned the highest-weight module, {top_s}, alone, as requested "
                        "with --merge top1.")
    if requested == "ensemble":
        return "ensemble", (f"Fine-tuned each of the {n} selected modules with its own head and "
                            "combined their predictions with the weights, as requested with "
                            "--merge ensemble.")
    return requested, f"Used --merge {requested}, as requested."


def same_computation_notes(strategy: str, the_plan: Plan, n_candidates: int) -> list[str]:
    """Sentences for strategies that reduce to another one's computation on this input (each
    strategy declares its own, :attr:`moma.amc.registry.Strategy.same_computation`)."""
    same = get_strategy(strategy).same_computation
    return same(the_plan, n_candidates) if same is not None else []


def guard_baseline(backbone: Backbone, the_plan: Plan, candidates: Sequence[LoadedModule],
                   options: ComposeOptions, *, seed: int) -> tuple[GuardBaseline | None, str]:
    """The guard's start (moma.amc.guard), or None with the reason it does not run."""
    if not get_strategy(options.strategy).needs_modules:
        return None, f"--strategy {options.strategy} is itself the guard's baseline"
    if not the_plan.modules:
        return None, "no modules were composed"
    single = (the_plan.modules[int(np.argmax(the_plan.weights))]
              if the_plan.merge == "top1" or len(the_plan.modules) == 1 else None)
    same_start = single is not None and options.head == "fresh"
    torch.manual_seed(seed)
    bases = {m.card.base_sha256 for m in the_plan.modules}
    if len(bases) == 1:
        base = next(iter(bases))
        state = _find_base_state(backbone, base, the_plan.modules, options)
        if state is not None:
            if same_start and single is not None and options.kind == "full" \
                    and single.module_id == base:
                return None, (f"the composition starts from {single.card.name}, which is the "
                              "base itself: the guard would repeat the same computation")
            model = with_state(backbone, state, options.kind, None)
            return GuardBaseline(f"the fine-tuned base ({base[:12]})",
                                 [Start(model, 1.0, [], base)]), ""
    explicit = _explicit_base(backbone, options)
    if explicit is not None:  # --base-module, or the backbone's pretrained weights
        state, base, label = explicit
        if not (same_start and single is not None and options.kind == "full"
                and single.module_id == base):
            model = with_state(backbone, state, options.kind, None)
            return GuardBaseline(label, [Start(model, 1.0, [], base)]), ""
    pool = the_plan.selection.modules if the_plan.selection else list(candidates)
    proxy = the_plan.selection.proxy_mae if the_plan.selection else None
    best = pool[best_single_index(proxy, len(pool))]
    if same_start and single is not None and single.module_id == best.module_id:
        return None, (f"the composition is the single module {best.card.name}, which is also "
                      "the best single module: the guard would repeat the same computation")
    model = from_modules(backbone, [best], np.ones(1), options)
    parent = [{"module_id": best.module_id, "name": best.card.name, "weight": 1.0}]
    return GuardBaseline(f"the best single module {best.card.name}",
                         [Start(model, 1.0, parent, module_base(best, options.kind))]), ""


def _explicit_base(backbone: Backbone, options: ComposeOptions
                   ) -> tuple[dict[str, Any], str, str] | None:
    """The base a user named (``--base-module``) or the backbone ships, with a label."""
    if options.base_module is not None:
        module = options.base_module
        return (module.state, module.module_id,
                f"the fine-tuned base module {module.card.name} ({module.module_id[:12]})")
    pretrained = backbone.pretrained_base()
    if pretrained is not None:
        return (pretrained[0], pretrained[1],
                f"the fine-tuned pretrained {backbone.name} ({pretrained[1][:12]})")
    return None


def _find_base_state(backbone: Backbone, base: str, modules: Sequence[LoadedModule],
                     options: ComposeOptions) -> dict[str, Any] | None:
    if options.base_module is not None and options.base_module.module_id == base:
        return options.base_module.state
    folders = list(dict.fromkeys([m.path.parent for m in modules] + list(options.base_dirs)))
    try:
        return find_base(backbone, base, folders)
    except MomaError:
        return None


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
