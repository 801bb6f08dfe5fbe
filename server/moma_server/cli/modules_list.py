"""``moma-hub modules list``: modules in any curation state, e.g. the pending queue."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from moma.errors import MomaError
from moma.safe_text import for_markup
from moma_server.cli import operator_client as oc

STATES = ("pending", "approved", "rejected", "revoked")


def list_modules(
    state: list[str] = typer.Option(["pending"], "--state",
                                    help="pending|approved|rejected|revoked|all (repeatable)."),
    backbone: str = typer.Option("", "--backbone"), kind: str = typer.Option("", "--kind"),
    task: str = typer.Option("", "--task"), base: str = typer.Option("", "--base"),
    hub: str = oc.HubOpt, operator_key: Path | None = oc.ReadKeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """List modules (pending by default), all pages."""
    from moma.proto.hub.v1 import hub_pb2

    wanted = list(STATES) if "all" in state else state
    bad = sorted(set(wanted) - set(STATES))
    if bad:
        raise MomaError(f"unknown state(s) {bad}: use {', '.join(STATES)} or all")
    client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
    request = hub_pb2.ListModulesRequest(
        backbone=backbone, kind=kind, task=task, base_sha256=base, page_size=1000,
        states=[hub_pb2.ModuleState.Value(f"MODULE_STATE_{s.upper()}") for s in wanted])
    modules: list[hub_pb2.ModuleSummary] = []
    while True:
        page = oc.call(client.module_stub.ListModules, request, "ListModules")
        modules.extend(page.modules)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    if as_json:
        oc.print_json([oc.to_dict(m) for m in modules])
        return
    table = Table("module id", "state", "backbone", "kind", "task", "lab", "size", "submitted")
    for m in modules:
        table.add_row(m.module_id[:16], hub_pb2.ModuleState.Name(m.state)[13:].lower(),
                      *(for_markup(v, 64) for v in (m.backbone, m.kind, m.task, m.lab_name)),
                      str(m.size), for_markup(m.submitted_at, 32))
    Console().print(table)
    typer.echo(f"{len(modules)} module(s)")
