"""``moma-hub init``: a new hub's identity (hub key) and a first operator key pair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from moma.errors import MomaError
from moma_server.cli.serve import HUB_ID_FILE, HUB_KEY_FILE

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def init(
    store: Path = typer.Option(..., "--store", help="The hub's store folder."),
    hub_id: str = typer.Option("", "--hub-id", help="Hub id (default: hub-<hub key id>)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create STORE/hub_key.pem (0600), STORE/operator_key.pem (0600) + .pub.pem, STORE/hub_id."""
    from moma.trust.keys import (
        generate_keypair,
        key_id,
        public_key_to_b64,
        save_private_key,
        save_public_key,
    )

    hub_key_path = store / HUB_KEY_FILE
    if hub_key_path.exists():
        raise MomaError(f"{hub_key_path} exists: this store already has a hub identity")
    hub_private, hub_public = generate_keypair()
    hub_id = hub_id or f"hub-{key_id(hub_public)}"
    if not _HUB_ID.fullmatch(hub_id):
        raise MomaError(f"hub id {hub_id!r}: use letters, digits and . _ : - (max 128)")
    op_private, op_public = generate_keypair()
    save_private_key(hub_key_path, hub_private)
    save_private_key(store / "operator_key.pem", op_private)
    save_public_key(store / "operator_key.pub.pem", op_public)
    (store / HUB_ID_FILE).write_text(hub_id + "\n", encoding="utf-8")
    info = {"hub_id": hub_id, "hub_key_id": key_id(hub_public),
            "hub_public_key": public_key_to_b64(hub_public),
            "operator_key_id": key_id(op_public),
            "operator_private_key": str(store / "operator_key.pem"),
            "operator_public_key": str(store / "operator_key.pub.pem")}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for name, value in info.items():
        typer.echo(f"{name}: {value}")
    typer.echo(f"serve with: moma-hub serve --store {store} --operator-key "
               f"{store / 'operator_key.pub.pem'} --tls-cert CERT --tls-key KEY")
