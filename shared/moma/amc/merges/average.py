"""``average``: theta = sum_j w_j theta_j over every tensor (the paper's method).

Only for modules sharing one base: measured, averaging separately trained models collapses
their embeddings, so anything else is refused with an error naming the mismatch.
"""

from __future__ import annotations

from moma.amc.plan import Start, StartInput
from moma.amc.registry import Merge


def start(inp: StartInput) -> list[Start]:
    from moma.amc.compose import from_modules

    modules = inp.plan.modules
    model = from_modules(inp.backbone, modules, inp.plan.weights, inp.options)
    return [Start(model, 1.0, inp.parents, modules[0].card.base_sha256)]


MERGE = Merge(
    name="average",
    description="weighted parameter average (modules sharing one base only)",
    start=start,
    needs_shared_base=True,
)
