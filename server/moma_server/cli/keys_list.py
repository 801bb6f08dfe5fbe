"""``moma-hub keys list``: who may contribute (and who operates)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from moma.safe_text import for_markup
from moma_server.cli import operator_client as oc


def list_keys(
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    hub: str = oc.HubOpt, operator_key: Path = oc.KeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """List operator and lab keys."""
    from moma.proto.hub.v1 import hub_pb2

    client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
    response = client.operator("ListKeys",
                               hub_pb2.ListKeysRequest(include_revoked=include_revoked))
    if as_json:
        oc.print_json([oc.to_dict(k) for k in response.keys])
        return
    table = Table("key id", "lab", "role", "enrolled", "revoked")
    for key in response.keys:
        role = hub_pb2.KeyRole.Name(key.role).removeprefix("KEY_ROLE_").lower()
        table.add_row(*(for_markup(v, 64) for v in (key.key_id, key.lab_name, role,
                                                    key.enrolled_at)),
                      for_markup(f"{key.revoked_at} {key.revoke_reason}".strip(), 120))
    Console().print(table)
