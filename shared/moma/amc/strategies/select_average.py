"""``select-average``: the modules AMC selected, uniform weights (are the weights needed?)."""

from __future__ import annotations

from moma.amc.plan import Plan, PlanInput
from moma.amc.registry import Strategy
from moma.amc.strategies import (
    SELECTION_PARAMETERS,
    equal_weights_note,
    select_and_keep,
    uniform,
)


def plan(inp: PlanInput) -> Plan:
    selection, _, picked = select_and_keep(inp)
    return Plan([inp.candidates[i] for i in picked], uniform(len(picked)), "", "", selection)


def same_computation(the_plan: Plan, n_candidates: int) -> list[str]:
    if len(the_plan.modules) == 1:
        return ["select-average selected one module: the same computation as amc here."]
    return equal_weights_note("select-average", the_plan, n_candidates)


STRATEGY = Strategy(
    name="select-average",
    description="ablation: the modules AMC selects, with uniform weights",
    plan=plan,
    parameters=SELECTION_PARAMETERS,
    same_computation=same_computation,
)
