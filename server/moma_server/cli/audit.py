"""``moma-hub audit``: read the whole audit log and verify its hash chain end to end."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from moma.errors import ExitCode, MomaError
from moma.safe_text import for_markup
from moma_server.cli import operator_client as oc


class AuditChainError(MomaError):
    """The hub's audit log does not verify."""

    exit_code = ExitCode.TRUST


def audit(
    hub: str = oc.HubOpt, operator_key: Path = oc.KeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """Print the audit log; exit non-zero (7) if any entry breaks the hash chain."""
    from moma.proto.hub.v1 import hub_pb2
    from moma_server.store.audit import AuditRecord, verify_chain

    client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
    entries: list[hub_pb2.AuditEntry] = []
    after = 0
    while True:
        page = client.operator("AuditLog", hub_pb2.AuditLogRequest(after_seq=after, limit=1000))
        entries.extend(page.entries)
        if not page.more or not page.entries:
            break
        after = page.entries[-1].seq
    records = [AuditRecord(seq=e.seq, time=e.time, actor_key_id=e.actor_key_id,
                           action=e.action, subject=e.subject, detail_json=e.detail_json,
                           prev_hash=e.prev_hash, entry_hash=e.entry_hash) for e in entries]
    try:
        verify_chain(records)
        problem = ""
    except ValueError as exc:
        problem = str(exc)
    if as_json:
        oc.print_json({"verified": not problem, "problem": problem, "count": len(entries),
                       "entries": [oc.to_dict(e) for e in entries]})
    else:
        table = Table("seq", "time", "actor", "action", "subject", "details")
        for e in entries:
            table.add_row(str(e.seq), *(for_markup(v, 64) for v in (e.time, e.actor_key_id,
                                                                     e.action)),
                          for_markup(e.subject[:16]),
                          for_markup(json.dumps(json.loads(e.detail_json or "{}"))[:60]))
        Console().print(table)
        if not problem:
            head = entries[-1].entry_hash if entries else "-"
            typer.echo(f"audit chain verified: {len(entries)} entries, head {head}")
    if problem:
        raise AuditChainError(f"audit chain BROKEN: {problem}")
