"""``backbone-ft``: the shared base alone, fine-tuned (the baseline AMC has to beat)."""

from __future__ import annotations

import numpy as np

from moma.amc.plan import Plan, PlanInput, Start, StartInput
from moma.amc.registry import Strategy
from moma.errors import MomaError


def plan(inp: PlanInput) -> Plan:
    return Plan([], np.zeros(0), "none", "backbone-ft: no modules composed")


def start(inp: StartInput) -> list[Start]:
    from moma.amc.compose import with_state

    options, backbone = inp.options, inp.backbone
    if options.base_module is not None:
        state, base = options.base_module.state, options.base_module.module_id
    else:
        pretrained = backbone.pretrained_base()
        if pretrained is None:
            raise MomaError(f"backbone-ft with {backbone.name} needs the base module: pass "
                            "--base-module (e.g. the imported mp_eform module)")
        state, base = pretrained
    return [Start(with_state(backbone, state, options.kind, None), 1.0, [], base)]


STRATEGY = Strategy(
    name="backbone-ft",
    description="baseline: the base alone (pretrained or --base-module), fine-tuned",
    plan=plan,
    start=start,
    needs_modules=False,
    needs_base=True,
    parameters=("base_module",),
)
