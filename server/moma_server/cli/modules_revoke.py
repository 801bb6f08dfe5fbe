"""``moma-hub modules revoke``: a curation decision, written to the audit log."""

from __future__ import annotations

from pathlib import Path

import typer

from moma.proto.hub.v1 import hub_pb2
from moma_server.cli import operator_client as oc
from moma_server.cli.resolve_id import resolve_module_id


def revoke(
    module_id: str = typer.Argument(..., help="Module id (sha256, or a unique prefix of 6+ hex digits)."),
    reason: str = typer.Option("", "--reason", help="Why, for the audit log and users."),
    hub: str = oc.HubOpt, operator_key: Path = oc.KeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """Revoke an approved module: it is no longer offered or served."""
    client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
    module_id = resolve_module_id(client, module_id)
    response = client.operator("RevokeModule", hub_pb2.RevokeModuleRequest(module_id=module_id, reason=reason))
    if as_json:
        oc.print_json(oc.to_dict(response))
    else:
        state = hub_pb2.ModuleState.Name(response.module.state)[13:].lower()
        typer.echo(f"module {response.module.module_id} is now {state}")
