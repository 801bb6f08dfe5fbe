"""``scratch``: random initialization, every weight trained (the floor of learning at all)."""

from __future__ import annotations

from moma.amc.plan import Start, StartInput
from moma.amc.registry import Strategy
from moma.amc.strategies import no_modules
from moma.errors import MomaError


def start(inp: StartInput) -> list[Start]:
    from moma.modules.store import sha256_state

    model = inp.backbone.build()
    if inp.options.kind == "adapter":
        raise MomaError("--strategy scratch trains every weight: use --kind full")
    return [Start(model, 1.0, [], sha256_state(model.state_dict()))]


STRATEGY = Strategy(
    name="scratch",
    description="baseline: random initialization, every weight trained",
    plan=no_modules,
    start=start,
    needs_modules=False,
    kinds=("full",),
)
