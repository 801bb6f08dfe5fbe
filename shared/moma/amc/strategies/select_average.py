"""``select-average``: the modules AMC selected, uniform weights (are the weights needed?)."""

from __future__ import annotations

from moma.amc.plan import Plan, PlanInput
from moma.amc.registry import Strategy
from moma.amc.strategies import SELECTION_PARAMETERS, select_and_keep, uniform


def plan(inp: PlanInput) -> Plan:
    selection, _, picked = select_and_keep(inp)
    return Plan([inp.candidates[i] for i in picked], uniform(len(picked)), "", "", selection)


STRATEGY = Strategy(
    name="select-average",
    description="ablation: the modules AMC selects, with uniform weights",
    plan=plan,
    parameters=SELECTION_PARAMETERS,
)
