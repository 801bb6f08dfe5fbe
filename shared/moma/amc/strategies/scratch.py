"""``scratch``: random initialization, every weight trained (the floor of learning at all)."""

from __future__ import annotations

from moma.amc.plan import Start, StartInput
from moma.amc.strategies import baseline
from moma.errors import MomaError


def start(inp: StartInput) -> list[Start]:
    from moma.modules.store import sha256_state

    model = inp.backbone.build()
    if inp.options.kind == "adapter":
        raise MomaError("--strategy scratch trains every weight: use --kind full")
    return [Start(model, 1.0, [], sha256_state(model.state_dict()))]


STRATEGY = baseline("scratch", "baseline: random initialization, every weight trained", start,
                    kinds=("full",))
