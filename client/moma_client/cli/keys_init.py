"""``moma-client keys init``: a lab's Ed25519 identity for contributing to hubs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moma.errors import TrustError
from moma_client.cli.common import print_json
from moma_client.cli.hub_options import line

keys_app = typer.Typer(help="Lab keys: create the key pair that signs contributions.",
                       no_args_is_help=True)


def default_key_path() -> Path:
    """``~/.config/moma/lab_key.pem`` (``$XDG_CONFIG_HOME`` respected)."""
    import os

    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "moma" / "lab_key.pem"


def public_path(private: Path) -> Path:
    """Where the public half goes: ``lab_key.pem`` -> ``lab_key.pub.pem``."""
    return private.with_name(f"{private.name.removesuffix('.pem')}.pub.pem")


@keys_app.command("init")
def init(
    out_path: Annotated[Path | None, typer.Option("--out", help="Private key file (mode 0600); the public key goes beside it as NAME.pub.pem. Default: ~/.config/moma/lab_key.pem.")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an Ed25519 key pair; prints the key id and public key to give the hub operator."""
    from moma.trust.keys import (
        generate_keypair,
        key_id,
        public_key_to_b64,
        save_private_key,
        save_public_key,
    )

    private_path = out_path or default_key_path()
    pub_path = public_path(private_path)
    for path in (private_path, pub_path):
        if path.exists():
            raise TrustError(f"refusing to overwrite existing key file {path}: a hub may have "
                             "enrolled it; choose another --out or move it away first")
    private, public = generate_keypair()
    save_private_key(private_path, private)
    save_public_key(pub_path, public)
    info = {"key_id": key_id(public), "public_key": public_key_to_b64(public),
            "private_key_file": str(private_path), "public_key_file": str(pub_path)}
    if json_output:
        print_json(info)
        return
    line(f"key id      {info['key_id']}")
    line(f"public key  {info['public_key']}")
    line(f"private key {private_path} (mode 0600: keep it secret, back it up)")
    line(f"public key  {pub_path}")
    line("Give the public key (or its file) to the hub operator: "
              f"moma-hub keys enroll LAB_NAME {info['public_key']}")
