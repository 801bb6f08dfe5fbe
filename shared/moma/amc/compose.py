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

from moma.amc.guard import GuardBaseline, StartModel, best_single_index
from moma.amc.merge import MergeInput, average_parameters, check_mergeable, select_weights
from moma.amc.selection import Selection, select
from moma.backbones.adapters import insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import IncompatibleModulesError, ModuleFormatError, MomaError
from moma.modules.store import LoadedModule
from moma.training.loop import EpochStats, TrainConfig, fit, predict_standardized
from moma.training.modeling import find_base
from moma.uncertainty.ranges import PhysicalRange

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
    guard: bool = True  # also fine-tune the base (or best single module); keep the better start
    coverage: float = 0.9  # conformal interval level (moma.uncertainty.conformal)
    physical_range: PhysicalRange | None = None  # None: the task's declared range, if any
    range_policy: str = "clip"  # or "flag" (moma.uncertainty.ranges)


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
    merge, reason = _choose_merge(chosen, np.asarray(weights), options.merge)
    return Plan(chosen, np.asarray(weights, dtype=np.float64), merge, reason, selection)


def _merge_inputs(modules: Sequence[LoadedModule]) -> list[MergeInput]:
    def loader(module: LoadedModule) -> Callable[[], dict[str, torch.Tensor]]:
        return lambda: module.state

    return [MergeInput(m.card.name, m.card.backbone, m.card.base_sha256, loader(m))
            for m in modules]


def _choose_merge(chosen: Sequence[LoadedModule], weights: np.ndarray,
                  requested: str) -> tuple[str, str]:
    """The merge and one plain sentence saying what was done and why."""
    n = len(chosen)
    top = chosen[int(np.argmax(weights))] if n else None
    top_s = f"{top.card.name} (weight {float(np.max(weights)):.2f})" if top else ""
    if n == 1 and requested in ("auto", "average", "ensemble"):
        return "top1", (f"One module was selected, {chosen[0].card.name}; it is fine-tuned "
                        "alone (average, top1 and ensemble are the same computation for one "
                        "module).")
    if requested == "average":
        check_mergeable(_merge_inputs(chosen))
        return "average", (f"Averaged the parameters of the {n} selected modules with their "
                           "weights, as requested with --merge average (they share one base).")
    if requested == "top1":
        return "top1", (f"Fine-tuned the highest-weight module, {top_s}, alone, as requested "
                        "with --merge top1.")
    if requested == "ensemble":
        return "ensemble", (f"Fine-tuned each of the {n} selected modules with its own head and "
                            "combined their predictions with the weights, as requested with "
                            "--merge ensemble.")
    try:
        check_mergeable(_merge_inputs(chosen))
    except IncompatibleModulesError:
        return "top1", (f"The {n} selected modules were trained from different bases, so their "
                        f"parameters cannot be averaged; fine-tuned the highest-weight one, "
                        f"{top_s} (--merge ensemble would fine-tune all of them instead).")
    return "average", (f"Averaged the parameters of the {n} selected modules with their weights "
                       "(they share one base).")


def same_computation_notes(strategy: str, the_plan: Plan, n_candidates: int) -> list[str]:
    """Sentences for strategies that reduce to another one's computation on this input."""
    notes = []
    n = len(the_plan.modules)
    if strategy == "select-average" and n == 1:
        notes.append("select-average selected one module: the same computation as amc here.")
    if strategy == "all-average" and n_candidates == 1:
        notes.append("all-average over one candidate: the same computation as amc with top1.")
    if strategy == "random" and n == n_candidates:
        notes.append("random drew every candidate: the same computation as all-average here.")
    if strategy in ("amc", "select-average") and n == n_candidates and n > 1 \
            and np.allclose(the_plan.weights, 1.0 / n):
        notes.append(f"{strategy} kept every candidate with equal weights: the same computation "
                     "as all-average here.")
    return notes


def start_models(backbone: Backbone, the_plan: Plan, options: ComposeOptions,
                 *, seed: int) -> list[StartModel]:
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


def guard_baseline(backbone: Backbone, the_plan: Plan, candidates: Sequence[LoadedModule],
                   options: ComposeOptions, *, seed: int) -> tuple[GuardBaseline | None, str]:
    """The guard's start (moma.amc.guard), or None with the reason it does not run."""
    if options.strategy in ("backbone-ft", "scratch"):
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
            model = _with_state(backbone, state, options.kind, None)
            return GuardBaseline(f"the fine-tuned base ({base[:12]})",
                                 [(model, 1.0, [], base)]), ""
    pool = the_plan.selection.modules if the_plan.selection else list(candidates)
    proxy = the_plan.selection.proxy_mae if the_plan.selection else None
    best = pool[best_single_index(proxy, len(pool))]
    if same_start and single is not None and single.module_id == best.module_id:
        return None, (f"the composition is the single module {best.card.name}, which is also "
                      "the best single module: the guard would repeat the same computation")
    model = _from_modules(backbone, [best], np.ones(1), options)
    base = best.module_id if options.kind == "full" else best.card.base_sha256
    parent = [{"module_id": best.module_id, "name": best.card.name, "weight": 1.0}]
    return GuardBaseline(f"the best single module {best.card.name}",
                         [(model, 1.0, parent, base)]), ""


def _find_base_state(backbone: Backbone, base: str, modules: Sequence[LoadedModule],
                     options: ComposeOptions) -> dict[str, Any] | None:
    if options.base_module is not None and options.base_module.module_id == base:
        return options.base_module.state
    folders = list(dict.fromkeys([m.path.parent for m in modules] + list(options.base_dirs)))
    try:
        return find_base(backbone, base, folders)
    except (ModuleFormatError, MomaError):
        return None


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
