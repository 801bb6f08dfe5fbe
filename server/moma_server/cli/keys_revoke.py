"""``moma-hub keys revoke``: refuse a lab key's future manifests."""

from __future__ import annotations

from pathlib import Path

import typer

from moma.safe_text import clean
from moma_server.cli import operator_client as oc


def revoke(
    key_id: str = typer.Argument(..., help="Key id (16 hex characters) from `keys list`."),
    reason: str = typer.Option("", "--reason", help="Why, for the audit log."),
    hub: str = oc.HubOpt, operator_key: Path = oc.KeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """Revoke a lab key; modules it already contributed keep their state."""
    from moma.proto.hub.v1 import hub_pb2

    client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
    response = client.operator("RevokeKey", hub_pb2.RevokeKeyRequest(key_id=key_id,
                                                                     reason=reason))
    if as_json:
        oc.print_json(oc.to_dict(response.key))
    else:
        typer.echo(f"revoked key {clean(response.key.key_id)} ({clean(response.key.lab_name)})")
