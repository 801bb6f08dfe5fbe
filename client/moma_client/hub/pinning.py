"""Which hub key a client trusts: an explicit ``--hub-key``, or one remembered on first use.

The hub's Ed25519 key countersigns every approval; a client that took the key from the hub
it is talking to would accept anything an impostor countersigned. So the key is pinned:

* ``--hub-key KEY`` (base64 raw key or PEM file, as ``moma-hub init`` prints it): the hub must
  present exactly this key, or nothing is used. This is the recommended way.
* otherwise trust on first use, like ssh's ``known_hosts``: the first time an address is
  contacted its key is stored in ``known_hubs.json`` (``$MOMA_KNOWN_HUBS``, default
  ``$XDG_CONFIG_HOME/moma/known_hubs.json`` or ``~/.config/moma/known_hubs.json``) and a
  warning says so; later, a different key at that address is refused until the entry is
  removed or ``--hub-key`` names the new key.

Entries are keyed by address (what the user typed), not by the hub id the hub reports, because
an impostor chooses its own hub id but cannot choose which address the user dialled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from moma.atomic_io import write_json
from moma.errors import TrustError
from moma.trust.canonical import format_utc
from moma.trust.keys import key_id, load_public_key, public_key_from_b64, public_key_to_b64


def known_hubs_path() -> Path:
    """``$MOMA_KNOWN_HUBS``, else ``$XDG_CONFIG_HOME/moma/known_hubs.json``."""
    env = os.environ.get("MOMA_KNOWN_HUBS")
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "moma" / "known_hubs.json"


def parse_hub_key(value: str) -> Ed25519PublicKey:
    """A hub public key given on the command line: a PEM file path or the base64 raw key."""
    path = Path(value).expanduser()
    if path.is_file():
        return load_public_key(path)
    return public_key_from_b64(value)


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrustError(f"{path} is not a readable known-hubs file ({exc}): fix or remove it"
                         ) from None
    if not isinstance(data, dict) or not isinstance(data.get("hubs", {}), dict):
        raise TrustError(f"{path} is not a known-hubs file: fix or remove it")
    hubs: dict[str, Any] = data.get("hubs", {})
    return hubs


def pin_hub_key(address: str, presented: Ed25519PublicKey, hub_id: str, *,
                expected: Ed25519PublicKey | None = None,
                warn: Callable[[str], None] | None = None) -> Ed25519PublicKey:
    """The key to verify countersignatures with, after checking what the hub presented.

    Raises :class:`TrustError` if the presented key differs from ``expected`` or from the one
    remembered for ``address``.
    """
    shown = key_id(presented)
    if expected is not None:
        if key_id(expected) != shown or public_key_to_b64(expected) != public_key_to_b64(
                presented):
            raise TrustError(
                f"hub at {address} presents key {shown}, but --hub-key is {key_id(expected)}: "
                "you may be talking to another hub; check the address and the key the operator "
                "gave you")
        return expected
    path = known_hubs_path()
    hubs = _load(path)
    entry = hubs.get(address)
    if isinstance(entry, dict) and "public_key" in entry:
        try:
            pinned = public_key_from_b64(str(entry["public_key"]))
        except TrustError:
            raise TrustError(f"{path}: entry for {address} holds no valid key: remove it") from None
        if key_id(pinned) != shown or entry["public_key"] != public_key_to_b64(presented):
            raise TrustError(
                f"hub at {address} presents key {shown}, but {path} pins {key_id(pinned)} for "
                "it: another hub may be answering; if the operator really changed the hub key, "
                f"pass --hub-key with the new key or remove the entry for {address}")
        return pinned
    hubs[address] = {"hub_id": hub_id, "key_id": shown,
                     "public_key": public_key_to_b64(presented),
                     "first_seen": format_utc(datetime.now(UTC))}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_json(path, {"format": "moma-known-hubs/1", "hubs": hubs}, 0o600)
    if warn is not None:
        warn(f"trusting hub {hub_id} at {address} on first use: key {shown} "
             f"({public_key_to_b64(presented)}) saved to {path}; compare it with the key the "
             "hub operator published, or pass --hub-key to pin it explicitly")
    return presented


__all__ = ["known_hubs_path", "parse_hub_key", "pin_hub_key"]
