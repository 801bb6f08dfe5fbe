"""Each registered strategy and merge on real modules and real structures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moma.amc.compose import (
    ComposeOptions,
    choose_merge,
    plan,
    same_computation_notes,
    start_models,
)
from moma.amc.plan import Plan
from moma.backbones.base import Graph
from moma.backbones.registry import get_backbone
from moma.errors import IncompatibleModulesError, MomaError
from moma.modules.store import LoadedModule
from moma.training.loop import TrainConfig

TrainSet = tuple[list[Graph], np.ndarray]


def options(**kw: object) -> ComposeOptions:
    return ComposeOptions(train=TrainConfig(epochs=1), **kw)  # type: ignore[arg-type]


def make_plan(strategy: str, candidates: list[LoadedModule], train_set: TrainSet,
              seed: int = 0, **kw: object):  # type: ignore[no-untyped-def]
    graphs, y = train_set
    return plan(get_backbone("cgcnn"), candidates, graphs, y, options(strategy=strategy, **kw),
                seed=seed)


def test_amc_keeps_the_weighted_modules_in_decreasing_weight(
        moe_modules: list[LoadedModule], train_set: TrainSet) -> None:
    p = make_plan("amc", moe_modules, train_set)
    assert p.selection is not None and len(p.selection.modules) == 4
    assert np.all(p.weights > 0) and p.weights.sum() == pytest.approx(1.0)
    assert list(p.weights) == sorted(p.weights, reverse=True)
    # every kept module is one the selection weighed above the threshold
    kept = {m.card.name for m, w in zip(p.selection.modules, p.selection.weights, strict=True)
            if w >= 1e-3}
    assert {m.card.name for m in p.modules} == kept
    assert p.merge == "top1" and "different bases" in p.reason


def test_select_average_and_random_reuse_the_selection_size(
        moe_modules: list[LoadedModule], train_set: TrainSet) -> None:
    amc = make_plan("amc", moe_modules, train_set)
    uniform = make_plan("select-average", moe_modules, train_set)
    assert [m.module_id for m in uniform.modules] == [m.module_id for m in amc.modules]
    assert np.allclose(uniform.weights, 1 / len(amc.modules))
    first = make_plan("random", moe_modules, train_set, seed=3)
    again = make_plan("random", moe_modules, train_set, seed=3)
    assert len(first.modules) == len(amc.modules)
    assert [m.module_id for m in first.modules] == [m.module_id for m in again.modules]
    assert np.allclose(first.weights, 1 / len(first.modules))


def test_all_average_takes_every_candidate_without_selecting(
        family: list[LoadedModule], train_set: TrainSet) -> None:
    p = make_plan("all-average", family, train_set)
    assert p.selection is None and [m.module_id for m in p.modules] == [
        m.module_id for m in family]
    assert list(p.weights) == [0.5, 0.5]
    assert p.merge == "average" and "share one base" in p.reason


def test_average_merge_is_the_weighted_parameter_average(
        family: list[LoadedModule], train_set: TrainSet) -> None:
    p = make_plan("all-average", family, train_set)
    [start] = start_models(get_backbone("cgcnn"), p, options(strategy="all-average"), seed=0)
    key = "convs.0.fc_full.weight"
    expected = 0.5 * family[0].state[key] + 0.5 * family[1].state[key]
    assert torch.allclose(start.model.state_dict()[key], expected, atol=1e-6)
    assert start.base_sha256 == family[0].card.base_sha256
    assert [parent["weight"] for parent in start.parents] == [0.5, 0.5]
    # the head is fresh (the paper's): not the average of the modules' heads
    head = "fc_out.weight"
    assert not torch.allclose(start.model.state_dict()[head],
                              0.5 * family[0].state[head] + 0.5 * family[1].state[head])


def test_top1_and_ensemble_starts(moe_modules: list[LoadedModule], train_set: TrainSet) -> None:
    backbone = get_backbone("cgcnn")
    top = make_plan("amc", moe_modules, train_set, merge="top1")
    [start] = start_models(backbone, top, options(strategy="amc", merge="top1"), seed=0)
    best = top.modules[int(np.argmax(top.weights))]
    assert start.base_sha256 == best.module_id
    key = "convs.3.bn2.running_var"
    assert torch.equal(start.model.state_dict()[key], best.state[key])
    ens = make_plan("all-average", moe_modules, train_set, merge="ensemble")
    starts = start_models(backbone, ens, options(strategy="all-average", merge="ensemble"),
                          seed=0)
    assert [s.base_sha256 for s in starts] == [m.module_id for m in moe_modules]
    assert [s.weight for s in starts] == [0.25] * 4


def test_merge_choice_rules(moe_modules: list[LoadedModule], family: list[LoadedModule]) -> None:
    assert choose_merge(moe_modules[:1], "average")[0] == "top1"
    assert choose_merge(moe_modules, "auto")[0] == "top1"
    merge, reason = choose_merge(family, "auto")
    assert merge == "average" and "share one base" in reason
    merge, reason = choose_merge(moe_modules, "ensemble")
    assert merge == "ensemble" and "--merge ensemble" in reason
    with pytest.raises(IncompatibleModulesError, match="one shared base"):
        choose_merge(moe_modules, "average")


def test_baselines_start_from_the_base_or_from_scratch(
        moe_modules: list[LoadedModule], train_set: TrainSet) -> None:
    backbone = get_backbone("cgcnn")
    base = moe_modules[3]  # mp_eform
    p = make_plan("backbone-ft", [], train_set)
    assert p.modules == [] and p.merge == "none"
    [start] = start_models(backbone, p, options(strategy="backbone-ft", base_module=base), seed=0)
    assert start.base_sha256 == base.module_id
    key = "convs.1.fc_full.weight"
    assert torch.equal(start.model.state_dict()[key], base.state[key])
    with pytest.raises(MomaError, match="needs the base module"):
        start_models(backbone, p, options(strategy="backbone-ft"), seed=0)
    [scratch] = start_models(backbone, make_plan("scratch", [], train_set),
                             options(strategy="scratch"), seed=0)
    assert not torch.equal(scratch.model.state_dict()[key], base.state[key])
    with pytest.raises(MomaError, match="use --kind full"):
        start_models(backbone, make_plan("scratch", [], train_set),
                     options(strategy="scratch", kind="adapter"), seed=0)


def test_each_strategy_says_when_it_reduces_to_another(
        moe_modules: list[LoadedModule], train_set: TrainSet) -> None:
    """The sentences live with each strategy (registry), not in the compose code."""
    one = moe_modules[:1]
    assert same_computation_notes("select-average", make_plan("select-average", one, train_set),
                                  1) == ["select-average selected one module: the same "
                                         "computation as amc here."]
    assert same_computation_notes("all-average", make_plan("all-average", one, train_set),
                                  1) == ["all-average over one candidate: the same computation "
                                         "as amc with top1."]
    every = Plan(list(moe_modules), np.full(4, 0.25), "", "")
    assert same_computation_notes("amc", every, 4) == [
        "amc kept every candidate with equal weights: the same computation as all-average here."]
    assert same_computation_notes("random", every, 4) == [
        "random drew every candidate: the same computation as all-average here."]
    uneven = Plan(list(moe_modules), np.array([0.4, 0.2, 0.2, 0.2]), "", "")
    assert same_computation_notes("amc", uneven, 4) == []
    assert same_computation_notes("random", Plan(one, np.ones(1), "", ""), 4) == []
    assert same_computation_notes("backbone-ft", make_plan("backbone-ft", one, train_set),
                                  1) == []
