"""Candidates for a compose, from a hub: approved, compatible, verified, cached locally.

What the hub learns from a compose is exactly what this function sends: the backbone and the
module kind (listing filters), and the ids of the modules it asks a card for or downloads.
Exclusion of modules trained on the downstream task happens here, on the client, from the
signed cards, so the task's name never leaves the machine either. Nothing in these requests is
computed from the data set (the privacy test in ``tests/integration`` records every request).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moma.amc.leakage import leaks
from moma.errors import MomaError
from moma_client.hub.cache import Fetched, ModuleCache
from moma_client.hub.client import HubCard, HubClient


@dataclass
class HubCandidates:
    """Module folders in the cache, ready for the local compose code path."""

    folders: list[Path] = field(default_factory=list)
    fetched: list[Fetched] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (module id, why)

    @property
    def downloaded_bytes(self) -> int:
        return sum(f.downloaded_bytes for f in self.fetched)

    @property
    def downloads(self) -> int:
        return sum(1 for f in self.fetched if not f.from_cache)


def fetch_candidates(client: HubClient, cache: ModuleCache, *, backbone: str, kind: str,
                     exclude_task: str | None,
                     on_module: Callable[[int, int, HubCard], None] | None = None
                     ) -> HubCandidates:
    """List approved ``backbone``/``kind`` modules, verify their cards, fetch them into ``cache``.

    A module whose signed card does not match the listing filters, or that was trained on
    ``exclude_task``, is skipped (and reported), never downloaded.
    """
    listed = list(client.list_modules(backbone=backbone, kind=kind, states=("approved",)))
    result = HubCandidates()
    for n, summary in enumerate(listed, start=1):
        hub_card = client.get_card(summary.module_id)
        card = hub_card.card
        if card.backbone != backbone or card.kind != kind:
            result.skipped.append((summary.module_id, f"signed card is a {card.kind} "
                                   f"{card.backbone} module, not {kind} {backbone}"))
            continue
        if leaks(card.task, (exclude_task,)):
            result.skipped.append((summary.module_id, f"trained on {card.task}, the task "
                                   "being composed for"))
            continue
        fetched = cache.fetch(client, summary.module_id, expected=hub_card.record)
        result.fetched.append(fetched)
        result.folders.append(fetched.path)
        if on_module is not None:
            on_module(n, len(listed), hub_card)
    if not result.folders:
        raise MomaError(f"hub {client.hub_id} at {client.address} offers no approved {kind} "
                        f"{backbone} modules" + (f" other than ones trained on {exclude_task}"
                                                 if exclude_task else "")
                        + "; contribute some, or ask the operator to approve pending ones")
    return result


__all__ = ["HubCandidates", "fetch_candidates"]
