"""``backbone-ft``: the shared base alone, fine-tuned (the baseline AMC has to beat)."""

from __future__ import annotations

from moma.amc.plan import Start, StartInput
from moma.amc.strategies import baseline
from moma.errors import MomaError


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


STRATEGY = baseline("backbone-ft",
                    "baseline: the base alone (pretrained or --base-module), fine-tuned",
                    start, needs_base=True, parameters=("base_module",))
