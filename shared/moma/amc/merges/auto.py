"""``auto``: ``average`` when the chosen modules share one base, else ``top1``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from moma.amc.merges import check_shared_base
from moma.amc.registry import Merge
from moma.errors import IncompatibleModulesError

if TYPE_CHECKING:
    from moma.modules.store import LoadedModule


def resolve(chosen: Sequence[LoadedModule], top: str = "") -> tuple[str, str]:
    """The merge for ``chosen`` and one plain sentence (``top``: the highest-weight module)."""
    n = len(chosen)
    try:
        check_shared_base(chosen)
    except IncompatibleModulesError:
        return "top1", (f"The {n} selected modules were trained from different bases, so their "
                        f"parameters cannot be averaged; fine-tuned the highest-weight one, "
                        f"{top or 'the first'}, instead (--merge ensemble would fine-tune all "
                        "of them).")
    return "average", (f"Averaged the parameters of the {n} selected modules with their weights "
                       "(they share one base).")


MERGE = Merge(
    name="auto",
    description="average when the chosen modules share a base, else top1 (default)",
    resolve=resolve,
)
