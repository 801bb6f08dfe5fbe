"""``moma-hub keys enroll``: let a lab contribute, under a name, with its public key."""

from __future__ import annotations

from pathlib import Path

import typer

from moma.safe_text import clean
from moma_server.cli import operator_client as oc


def enroll(
    lab_name: str = typer.Argument(..., help="Name the lab's modules are listed under."),
    public_key: str = typer.Argument(..., help="The lab's public key: a PEM file or the "
                                     "44-character base64 raw key."),
    hub: str = oc.HubOpt, operator_key: Path = oc.KeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """Enroll a lab's Ed25519 public key so its signed manifests are accepted."""
    from moma.proto.hub.v1 import hub_pb2
    from moma.trust.keys import load_public_key, public_key_from_b64, public_key_to_raw

    path = Path(public_key)
    key = load_public_key(path) if path.is_file() else public_key_from_b64(public_key)
    client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
    response = client.operator("EnrollKey", hub_pb2.EnrollKeyRequest(
        lab_name=lab_name, public_key=public_key_to_raw(key)))
    if as_json:
        oc.print_json(oc.to_dict(response.key))
    else:
        typer.echo(f"enrolled key {clean(response.key.key_id)} for lab "
                   f"{clean(repr(response.key.lab_name))}")
