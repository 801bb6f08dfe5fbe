"""Fields a peer sends that name things: checked for form before use, never echoed whole."""

from __future__ import annotations

import re
from typing import Any

from moma_server.services import convert
from moma_server.services.errors import invalid, shown

MAX_ROW_ID = 2**63 - 1
_TOKEN = re.compile(r"[1-9][0-9]{0,18}")
MODULE_ID = re.compile(r"[0-9a-f]{64}")


def page_after(token: str) -> int:
    """The row id a ``page_token`` resumes after; INVALID_ARGUMENT for anything not issued.

    Tokens are positive row ids in a signed 64-bit column: a negative, zero, non-decimal or
    larger number cannot come from this hub (and would overflow the database's integer).
    """
    if not token:
        return 0
    if _TOKEN.fullmatch(token) is None or int(token) > MAX_ROW_ID:
        raise invalid(f"page_token {shown(token)} was not issued by this hub: pass the previous "
                      "response's next_page_token unchanged, or none for the first page")
    return int(token)


def checked_module_id(module_id: str) -> str:
    """``module_id`` if it has the form of one (64 lowercase hex digits); never echoed whole."""
    if MODULE_ID.fullmatch(module_id) is None:
        raise invalid(f"module id {shown(module_id)} is not a module id: use the 64 lowercase "
                      "hex digits of the module's sha256 (see ListModules)")
    return module_id


def checked_states(states: list[Any]) -> list[str]:
    """The curation states a listing asks for (approved when none)."""
    names = [convert.PROTO_TO_STATE.get(s) for s in states]
    if None in names:
        raise invalid(f"unknown module state in {shown(states)}: use PENDING, APPROVED, "
                      "REJECTED or REVOKED")
    return [n for n in names if n] or ["approved"]
