"""``random``: as many random candidates as AMC selected, uniform weights (ablation)."""

from __future__ import annotations

from moma.amc.plan import Plan, PlanInput
from moma.amc.registry import Strategy
from moma.amc.strategies import SELECTION_PARAMETERS, select_and_keep, uniform


def plan(inp: PlanInput) -> Plan:
    import numpy as np

    selection, _, picked = select_and_keep(inp)
    rng = np.random.default_rng(inp.seed)
    idx = rng.choice(len(inp.candidates), size=len(picked), replace=False)
    return Plan([inp.candidates[i] for i in idx], uniform(len(idx)), "", "", selection)


def same_computation(the_plan: Plan, n_candidates: int) -> list[str]:
    if len(the_plan.modules) == n_candidates > 0:
        return ["random drew every candidate: the same computation as all-average here."]
    return []


STRATEGY = Strategy(
    name="random",
    description="ablation: as many random candidates as AMC selects, uniform weights",
    plan=plan,
    parameters=(*SELECTION_PARAMETERS, "seed"),
    same_computation=same_computation,
)
