"""``scratch``: random initialization, every weight trained (the floor of learning at all)."""

from __future__ import annotations

import numpy as np

from moma.amc.plan import Plan, PlanInput, Start, StartInput
from moma.amc.registry import Strategy
from moma.errors import MomaError


def plan(inp: PlanInput) -> Plan:
    return Plan([], np.zeros(0), "none", "scratch: no modules composed")


def start(inp: StartInput) -> list[Start]:
    from moma.modules.store import sha256_state

    model = inp.backbone.build()
    if inp.options.kind == "adapter":
        raise MomaError("--strategy scratch trains every weight: use --kind full")
    return [Start(model, 1.0, [], sha256_state(model.state_dict()))]


STRATEGY = Strategy(
    name="scratch",
    description="baseline: random initialization, every weight trained",
    plan=plan,
    start=start,
    needs_modules=False,
    kinds=("full",),
)
