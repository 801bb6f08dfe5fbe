"""``top1``: the highest-weight module alone (works across bases)."""

from __future__ import annotations

import numpy as np

from moma.amc.merges import module_base
from moma.amc.plan import Start, StartInput
from moma.amc.registry import Merge


def start(inp: StartInput) -> list[Start]:
    from moma.amc.compose import from_modules

    module = inp.plan.modules[int(np.argmax(inp.plan.weights))]
    model = from_modules(inp.backbone, [module], np.ones(1), inp.options)
    return [Start(model, 1.0, inp.parents, module_base(module, inp.options.kind))]


MERGE = Merge(
    name="top1",
    description="the highest-weight module alone",
    start=start,
)
