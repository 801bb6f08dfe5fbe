"""Compose strategies, one file each (registered in :mod:`moma.amc.registry`).

A strategy declares ``STRATEGY``: its name, what it needs, the options it reads, a one-line
description, and ``plan`` (which modules start the model, with which weights). Heavy imports
happen inside the functions, so listing strategies stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from moma.amc.plan import PlanInput
    from moma.amc.selection import Selection

SELECTION_PARAMETERS = ("k", "knn_layer", "solver", "threshold")
"""The options of AMC selection (leave-one-out kNN proxies and simplex weights)."""


def select_and_keep(inp: PlanInput) -> tuple[Selection, np.ndarray, list[int]]:
    """AMC selection on the training split: the selection, the weights after dropping those
    below the threshold (renormalized), and the kept indices by decreasing weight."""
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
    return np.full(n, 1.0 / n)
