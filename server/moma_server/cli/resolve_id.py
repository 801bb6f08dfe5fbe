"""Module ids on the operator CLI: a full sha256, or a unique prefix as shown by ``list``.

``moma-hub modules list`` shows 16-digit ids; approving or showing one by that prefix is what
an operator does next. The prefix (at least 6 hex digits) is looked up in the hub's listing of
all states; the command then says which module it resolved to. No match or several matches
are one-line errors.
"""

from __future__ import annotations

import re

import typer

from moma.errors import MomaError
from moma.safe_text import clean
from moma_server.cli import operator_client as oc

MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")  # not moma.modules.card's: that imports torch (slow CLI)


def resolve_module_id(client: oc.OperatorClient, text: str) -> str:
    """The full module id for ``text`` (printing which module a prefix resolved to)."""
    from moma.proto.hub.v1 import hub_pb2

    prefix = text.strip().lower()
    if _SHA256.fullmatch(prefix):
        return prefix
    if len(prefix) < MIN_PREFIX or not _HEX.fullmatch(prefix):
        raise MomaError(f"module id {clean(repr(text))} is neither a sha256 nor a prefix of at least "
                        f"{MIN_PREFIX} hex digits: copy it from `moma-hub modules list`")
    request = hub_pb2.ListModulesRequest(page_size=1000, states=[
        hub_pb2.MODULE_STATE_PENDING, hub_pb2.MODULE_STATE_APPROVED,
        hub_pb2.MODULE_STATE_REJECTED, hub_pb2.MODULE_STATE_REVOKED])
    matches: list[hub_pb2.ModuleSummary] = []
    while True:
        page = oc.call(client.module_stub.ListModules, request, "ListModules")
        matches += [m for m in page.modules if m.module_id.startswith(prefix)]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    if not matches:
        raise MomaError(f"no module on the hub has an id starting with {prefix}; list them "
                        "with `moma-hub modules list --state all`")
    if len(matches) > 1:
        shown = ", ".join(m.module_id[:16] + "…" for m in matches[:4])
        raise MomaError(f"{prefix} matches {len(matches)} modules ({shown}): give more digits")
    found = matches[0]
    typer.echo(f"{prefix} is module {clean(found.module_id)} ({clean(found.task)}, "
               f"{clean(found.backbone)} {clean(found.kind)})", err=True)
    return found.module_id
