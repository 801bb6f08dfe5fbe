"""The one leakage rule of compose: never offer a module trained on the task being composed for.

A module trained on the downstream task itself (on any of its targets) has seen its labels,
possibly those of the validation and test splits, so it is never a candidate. Task names match
up to a ``:target`` suffix (``castelli_perovskites:e_form`` is task ``castelli_perovskites``).
The same rule applies to local folders (:func:`moma.amc.screening.screen_candidates`, which
names each module it leaves out and why) and to hub listings (the client's candidate fetch),
and to any further tasks a caller excludes.
"""

from __future__ import annotations

from collections.abc import Iterable


def same_task(a: str, b: str) -> bool:
    """Task names match up to a ``:target`` suffix."""
    return a.split(":")[0] == b.split(":")[0]


def leaks(module_task: str, excluded: Iterable[str | None]) -> bool:
    """Whether a module trained on ``module_task`` must not be a candidate when composing for
    (or holding out) the ``excluded`` tasks."""
    return any(task and same_task(module_task, task) for task in excluded)
