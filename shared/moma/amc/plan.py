"""What a compose strategy decides and what a merge builds from it (light types, no torch).

A strategy turns the candidates into a :class:`Plan` (modules, weights, the merge and why); a
merge (or, for the baselines, the strategy itself) turns the plan into :class:`Start` models
that are then fine-tuned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from moma.amc.compose import ComposeOptions
    from moma.amc.selection import Selection
    from moma.backbones.base import Backbone, BackboneModel
    from moma.modules.store import LoadedModule


@dataclass
class Plan:
    """Which modules start the composed model, with which weights, merged how, and why."""

    modules: list[LoadedModule]
    weights: np.ndarray
    merge: str
    reason: str
    selection: Selection | None = None


@dataclass
class PlanInput:
    """What a strategy may look at: the candidates and the (training split's) graphs/labels."""

    backbone: Backbone
    candidates: Sequence[LoadedModule]
    train_graphs: Sequence[Any]
    train_y: np.ndarray
    options: ComposeOptions
    seed: int
    on_module: Callable[[int, int], None] | None = None


@dataclass
class StartInput:
    """What a merge (or a baseline strategy) builds the starting models from."""

    backbone: Backbone
    plan: Plan
    options: ComposeOptions
    parents: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Start:
    """One starting model, its weight in the composition, its parents and its base sha256."""

    model: BackboneModel
    weight: float
    parents: list[dict[str, Any]]
    base_sha256: str

    def __iter__(self) -> Any:  # unpacks as (model, weight, parents, base)
        return iter((self.model, self.weight, self.parents, self.base_sha256))
