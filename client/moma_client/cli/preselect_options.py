"""``compose --hub ... --preselect K|none``: the option and the call compose makes with it.

Kept apart from ``compose.py`` so that the compose entry point only parses the option and,
unless it is ``none``, hands :func:`hub_preselected_folders` to compose's post-prepare hook
(it then sees the owner's training split, after ``--train-size``). Heavy imports happen inside
the call, so that ``--help`` and argument errors stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from moma.errors import MomaError
from moma.safe_text import clean
from moma_client.cli.common import err
from moma_client.cli.hub_options import Connection, connect
from moma_client.preselect import DEFAULT_TOP_K

if TYPE_CHECKING:
    import numpy as np

    from moma.backbones.base import Backbone, Graph

Preselect = Annotated[str, typer.Option("--preselect", help=f"With --hub: rank every compatible module locally from the hub's public fingerprints and your training split, download the top K (default {DEFAULT_TOP_K}); 'none' downloads every candidate (exhaustive).")]


def parse_preselect(value: str) -> int | None:
    """``none`` -> None (exhaustive); a positive integer -> that K."""
    if value.strip().lower() == "none":
        return None
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise MomaError(f"--preselect {clean(value)!r}: pass a number of modules (1 or more, "
                        f"e.g. {DEFAULT_TOP_K}) or 'none' for the exhaustive compose")
    return k


def hub_preselected_folders(hub: str, connection: Connection, *, backbone: Backbone, kind: str,
                            exclude_task: str | None, graphs: Sequence[Graph],
                            targets: np.ndarray, top_k: int
                            ) -> tuple[list[Path], dict[str, Any]]:
    """The top-K modules' cache folders and the pre-selection report (for report.json)."""
    from moma_client.hub.cache import ModuleCache
    from moma_client.hub.fingerprints import FingerprintCache
    from moma_client.preselect.run import preselect

    with connect(hub, connection) as client:
        result = preselect(client, ModuleCache(), FingerprintCache(), backbone, kind=kind,
                           graphs=graphs, targets=targets, top_k=top_k,
                           exclude_task=exclude_task)
    r = result.report
    if r["ranked"]:
        what = (f"ranked {r['ranked']} of {r['candidates']} {kind} {backbone.name} modules "
                f"from fingerprints ({r['fingerprints']['new']} new); top {len(result.folders)}")
    else:
        what = f"{r['candidates']} {kind} {backbone.name} modules, not ranked; all"
    err.print(f"hub {clean(client.hub_id)}: {what} verified, {r['downloads']} downloaded "
              f"({r['downloaded_bytes']} bytes) in {r['timings']['total_s']:.1f} s",
              soft_wrap=True, markup=False)
    return result.folders, r


__all__ = ["Preselect", "hub_preselected_folders", "parse_preselect"]
