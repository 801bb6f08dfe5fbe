"""Compose strategies, one file each (registered in :mod:`moma.amc.registry`).

A strategy declares ``STRATEGY``: its name, what it needs, the options it reads, a one-line
description, and ``plan`` (which modules start the model, with which weights). Heavy imports
happen inside the functions, so listing strategies stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moma.amc.registry import Strategy

if TYPE_CHECKING:
    import numpy as np

    from moma.amc.plan import Plan, PlanInput, Start, StartInput
    from moma.amc.selection import Selection

SELECTION_PARAMETERS = ("k", "knn_layer", "solver", "threshold")
"""The options of AMC selection (leave-one-out kNN proxies and simplex weights)."""


def select_and_keep(inp: PlanInput) -> tuple[Selection, np.ndarray, list[int]]:
    """AMC selection on the training split: the selection, the weights after dropping those
    below the threshold (renormalized), and the kept indices by decreasing weight."""
    import numpy as np

    from moma.amc.merge import select_weights
    from moma.amc.selection import select

    options = inp.options
    selection = select(inp.backbone, inp.candidates, inp.train_graphs, inp.train_y, k=options.k,
                       solver=options.solver, device=options.train.device,
                       base_dirs=options.base_dirs, layer=options.knn_layer,
                       on_module=inp.on_module)
    kept = select_weights(selection.weights, options.threshold)
    picked = [int(i) for i in np.argsort(-kept) if kept[i] > 0]
    return selection, kept, picked


def uniform(n: int) -> np.ndarray:
    import numpy as np

    return np.full(n, 1.0 / n)


def no_modules(inp: PlanInput) -> Plan:
    """The plan of a baseline that composes nothing (it builds its own start)."""
    import numpy as np

    from moma.amc.plan import Plan

    return Plan([], np.zeros(0), "none", f"{inp.options.strategy}: no modules composed")


def equal_weights_note(name: str, the_plan: Plan, n_candidates: int) -> list[str]:
    """A selection that kept every candidate with equal weights is all-average's computation."""
    import numpy as np

    n = len(the_plan.modules)
    if n == n_candidates and n > 1 and np.allclose(the_plan.weights, 1.0 / n):
        return [f"{name} kept every candidate with equal weights: the same computation as "
                "all-average here."]
    return []


def baseline(name: str, description: str, start: Callable[[StartInput], list[Start]],
             **needs: Any) -> Strategy:
    """A strategy that composes no module and builds its own starting model (``backbone-ft``,
    ``scratch``): the baselines every composition is measured against. ``needs``: further
    :class:`~moma.amc.registry.Strategy` fields (``needs_base``, ``kinds``, ``parameters``)."""
    return Strategy(name=name, description=description, plan=no_modules, start=start,
                    needs_modules=False, **needs)
