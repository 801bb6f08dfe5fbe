"""``amc``: the modules AMC weighs above the threshold, with their renormalized weights."""

from __future__ import annotations

from moma.amc.plan import Plan, PlanInput
from moma.amc.registry import Strategy
from moma.amc.strategies import SELECTION_PARAMETERS, equal_weights_note, select_and_keep


def plan(inp: PlanInput) -> Plan:
    selection, kept, picked = select_and_keep(inp)
    return Plan([inp.candidates[i] for i in picked], kept[picked], "", "", selection)


STRATEGY = Strategy(
    name="amc",
    description="AMC: modules weighted by leave-one-out kNN proxies (the paper's method)",
    plan=plan,
    parameters=SELECTION_PARAMETERS,
    same_computation=lambda the_plan, n: equal_weights_note("amc", the_plan, n),
)
