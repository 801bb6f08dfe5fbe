"""``ensemble``: every chosen module fine-tuned with its own head, predictions combined with
the weights (works across bases; costs one fine-tune per part)."""

from __future__ import annotations

import numpy as np

from moma.amc.merges import module_base
from moma.amc.plan import Start, StartInput
from moma.amc.registry import Merge


def start(inp: StartInput) -> list[Start]:
    from moma.amc.compose import from_modules

    plan, kind = inp.plan, inp.options.kind
    return [Start(from_modules(inp.backbone, [m], np.ones(1), inp.options), float(w),
                  [inp.parents[i]], module_base(m, kind))
            for i, (m, w) in enumerate(zip(plan.modules, plan.weights, strict=True))]


MERGE = Merge(
    name="ensemble",
    description="each chosen module fine-tuned with its own head, predictions weighted",
    start=start,
)
