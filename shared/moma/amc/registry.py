"""Registered compose strategies, merges and heads: names, needs, parameters, descriptions.

Like mergekit's merge methods, each strategy (:mod:`moma.amc.strategies`) and each merge
(:mod:`moma.amc.merges`) is one small file declaring its name, what it needs, the options it
reads and a one-line description; the CLI's choices and help text, the argument checks of the
compose entry point and the dispatch in :mod:`moma.amc.compose` all read this one table. The
declarations import nothing heavy (no torch), so a CLI can list them without loading a model.

Adding a strategy: a new file in ``moma/amc/strategies/`` defining ``STRATEGY`` and one line in
:data:`_STRATEGY_MODULES` (likewise for merges).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from moma.errors import MomaError

if TYPE_CHECKING:
    from moma.amc.plan import Plan, PlanInput, Start, StartInput


@dataclass(frozen=True)
class Strategy:
    """How a compose picks its starting modules (or starts without any)."""

    name: str
    description: str
    plan: Callable[[PlanInput], Plan]
    needs_modules: bool = True
    """Candidate modules are required (``--modules`` and/or ``--hub``)."""
    needs_base: bool = False
    """A base is required: the backbone's pretrained weights or ``--base-module``."""
    kinds: tuple[str, ...] = ("full", "adapter")
    parameters: tuple[str, ...] = ()
    """The compose options it reads (beyond data, kind and training settings)."""
    start: Callable[[StartInput], list[Start]] | None = None
    """Builds the starting model itself; None: the chosen merge does."""
    same_computation: Callable[[Plan, int], list[str]] | None = None
    """Sentences for the report when, on this input (its plan and the number of candidates),
    the strategy reduces to another one's computation."""


@dataclass(frozen=True)
class Merge:
    """How the chosen modules become the starting model(s) of the fine-tune."""

    name: str
    description: str
    start: Callable[[StartInput], list[Start]] | None = None
    needs_shared_base: bool = False
    resolve: Callable[..., tuple[str, str]] | None = None
    """For ``auto`` only: the merge actually used for the chosen modules, and why."""
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Head:
    """What the composed model's head starts from."""

    name: str
    description: str


_STRATEGY_MODULES = ("amc", "select_average", "all_average", "random", "backbone_ft", "scratch")
_MERGE_MODULES = ("auto", "average", "top1", "ensemble")

HEADS: dict[str, Head] = {h.name: h for h in (
    Head("fresh", "a new head, trained from scratch during the fine-tune (the paper's)"),
    Head("inherit", "the composed modules' head, refitted to the target by one affine map"),
)}
KNN_LAYERS: dict[str, str] = {
    "pooled": "the crystal embedding the head reads (CGCNN: 64-dim mean of atom features)",
    "head": "the input of the head's output layer (CGCNN: 32-dim after conv_to_fc)",
}
"""What feeds the kNN proxy of AMC selection."""
KINDS: dict[str, str] = {
    "full": "every backbone weight fine-tuned and stored",
    "adapter": "bottleneck adapters on a frozen base; only adapters and head stored",
}


@cache
def strategies() -> dict[str, Strategy]:
    """Every registered strategy by name, in declaration order."""
    found = [importlib.import_module(f"moma.amc.strategies.{m}").STRATEGY
             for m in _STRATEGY_MODULES]
    return {s.name: s for s in found}


@cache
def merges() -> dict[str, Merge]:
    """Every registered merge by name (``auto`` first), in declaration order."""
    found = [importlib.import_module(f"moma.amc.merges.{m}").MERGE for m in _MERGE_MODULES]
    return {m.name: m for m in found}


def _get(table: dict[str, Any], what: str, name: str) -> Any:
    if name not in table:
        raise MomaError(f"unknown {what} {name!r}; choose one of: {', '.join(table)}")
    return table[name]


def get_strategy(name: str) -> Strategy:
    return _get(strategies(), "strategy", name)  # type: ignore[no-any-return]


def get_merge(name: str) -> Merge:
    return _get(merges(), "merge", name)  # type: ignore[no-any-return]


def get_head(name: str) -> Head:
    return _get(HEADS, "head", name)  # type: ignore[no-any-return]


def check_knn_layer(name: str) -> str:
    return str(_get(KNN_LAYERS, "kNN layer", name) and name)


def help_text(table: dict[str, Any]) -> str:
    """``name: description; ...`` for a CLI option's help."""
    return "; ".join(f"{name}: {getattr(item, 'description', item)}"
                     for name, item in table.items())
