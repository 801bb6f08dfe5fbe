"""``auto``: ``average`` when the chosen modules share one base, else ``top1``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from moma.amc.merges import check_shared_base
from moma.amc.registry import Merge
from moma.errors import IncompatibleModulesError

if TYPE_CHECKING:
    from moma.modules.store import LoadedModule


def resolve(chosen: Sequence[LoadedModule]) -> tuple[str, str]:
    try:
        check_shared_base(chosen)
    except IncompatibleModulesError as exc:
        return "top1", f"modules do not share a base ({exc}); fine-tuning the top-weighted one"
    return "average", "the selected modules share one base: weighted parameter average"


MERGE = Merge(
    name="auto",
    description="average when the chosen modules share a base, else top1 (default)",
    resolve=resolve,
)
