"""``all-average``: every candidate, uniform weights (is selection needed?)."""

from __future__ import annotations

from moma.amc.plan import Plan, PlanInput
from moma.amc.registry import Strategy
from moma.amc.strategies import uniform


def plan(inp: PlanInput) -> Plan:
    chosen = list(inp.candidates)
    return Plan(chosen, uniform(len(chosen)), "", "")


def same_computation(_plan: Plan, n_candidates: int) -> list[str]:
    if n_candidates == 1:
        return ["all-average over one candidate: the same computation as amc with top1."]
    return []


STRATEGY = Strategy(
    name="all-average",
    description="ablation: every candidate, uniform weights",
    plan=plan,
    same_computation=same_computation,
)
