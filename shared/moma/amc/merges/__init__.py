"""Merges of the chosen modules, one file each (registered in :mod:`moma.amc.registry`).

A merge declares ``MERGE``: its name, whether the modules must share one base, a one-line
description and ``start`` (the starting model(s) of the fine-tune). ``auto`` only decides which
of the others to use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from moma.amc.merge import MergeInput
    from moma.modules.store import LoadedModule


def merge_inputs(modules: Sequence[LoadedModule]) -> list[MergeInput]:
    """Modules as inputs of :func:`moma.amc.merge.average_parameters` (states read lazily)."""
    from moma.amc.merge import MergeInput

    def loader(module: LoadedModule) -> Callable[[], dict[str, torch.Tensor]]:
        return lambda: module.state

    return [MergeInput(m.card.name, m.card.backbone, m.card.base_sha256, loader(m))
            for m in modules]


def check_shared_base(modules: Sequence[LoadedModule]) -> None:
    """Refuse (naming the mismatch) modules that do not share one backbone and base."""
    from moma.amc.merge import check_mergeable

    check_mergeable(merge_inputs(modules))


def module_base(module: LoadedModule, kind: str) -> str:
    """The base sha256 a model started from ``module`` records: the module itself (full) or
    the base its adapters sit on."""
    return module.module_id if kind == "full" else module.card.base_sha256
