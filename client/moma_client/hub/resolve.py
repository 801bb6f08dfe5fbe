"""A module id from a unique prefix, as people copy them from listings (``3f9a2c``).

The hub speaks full sha256 ids only; the CLI accepts a prefix of at least 6 hex digits, looks
it up in the hub's listing (the states the command may act on), and says which module it
resolved to. Zero or several matches are errors that say how to fix them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from moma.errors import MomaError
from moma.modules.card import is_sha256
from moma_client.hub.client import HubClient

MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+")


def resolve_module_id(client: HubClient, text: str,
                      states: Sequence[str] = ("approved",)) -> tuple[str, str | None]:
    """The full id for ``text`` and, when it was a prefix, a sentence naming the module."""
    prefix = text.strip().lower()
    if is_sha256(prefix):
        return prefix, None
    if len(prefix) < MIN_PREFIX or not _HEX.fullmatch(prefix):
        raise MomaError(f"module id {text!r} is neither a sha256 nor a prefix of at least "
                        f"{MIN_PREFIX} hex digits: copy it from `moma-client modules list --hub`")
    matches = [m for m in client.list_modules(states=tuple(states))
               if m.module_id.startswith(prefix)]
    if not matches:
        raise MomaError(f"no {'/'.join(states)} module on hub {client.hub_id} has an id starting "
                        f"with {prefix}; list them with `moma-client modules list --hub`")
    if len(matches) > 1:
        shown = ", ".join(m.module_id[:16] + "…" for m in matches[:4])
        raise MomaError(f"{prefix} matches {len(matches)} modules ({shown}): give more digits")
    found = matches[0]
    return found.module_id, (f"{prefix} is module {found.module_id} ({found.task}, "
                             f"{found.backbone} {found.kind})")
