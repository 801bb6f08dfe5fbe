"""Pinning the hub's key: an explicit ``--hub-key``, or trust on first use remembered on disk."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from moma.errors import TrustError
from moma.trust.keys import generate_keypair, key_id, public_key_to_b64, save_public_key
from moma_client.hub.pinning import known_hubs_path, parse_hub_key, pin_hub_key


@pytest.fixture()
def known_hubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config" / "known_hubs.json"
    monkeypatch.setenv("MOMA_KNOWN_HUBS", str(path))
    return path


def test_parse_hub_key_reads_base64_and_pem_files(tmp_path: Path) -> None:
    public = generate_keypair().public
    assert key_id(parse_hub_key(public_key_to_b64(public))) == key_id(public)
    pem = tmp_path / "hub.pub.pem"
    save_public_key(pem, public)
    assert key_id(parse_hub_key(str(pem))) == key_id(public)
    with pytest.raises(TrustError):
        parse_hub_key("not a key")


def test_first_use_is_remembered_then_enforced(known_hubs: Path) -> None:
    first, other = generate_keypair().public, generate_keypair().public
    warnings: list[str] = []
    assert known_hubs_path() == known_hubs
    pinned = pin_hub_key("hub.example:50051", first, "hub-a", warn=warnings.append)
    assert key_id(pinned) == key_id(first)
    assert len(warnings) == 1 and "first use" in warnings[0]
    saved = json.loads(known_hubs.read_text())
    assert saved["hubs"]["hub.example:50051"]["key_id"] == key_id(first)
    assert stat.S_IMODE(known_hubs.stat().st_mode) == 0o600
    # Same key again: accepted silently. Another key at that address: refused.
    again = pin_hub_key("hub.example:50051", first, "hub-a", warn=warnings.append)
    assert key_id(again) == key_id(first) and len(warnings) == 1
    with pytest.raises(TrustError, match="pins"):
        pin_hub_key("hub.example:50051", other, "hub-a")
    # Another address is its own entry.
    assert key_id(pin_hub_key("other:1", other, "hub-b")) == key_id(other)


def test_explicit_key_must_match_what_the_hub_presents(known_hubs: Path) -> None:
    presented, expected = generate_keypair().public, generate_keypair().public
    with pytest.raises(TrustError, match="--hub-key"):
        pin_hub_key("hub:1", presented, "hub", expected=expected)
    assert key_id(pin_hub_key("hub:1", presented, "hub", expected=presented)) == key_id(presented)
    assert not known_hubs.exists()  # an explicit pin writes nothing


def test_a_corrupt_known_hubs_file_is_an_error_not_a_silent_reset(known_hubs: Path) -> None:
    known_hubs.parent.mkdir(parents=True)
    known_hubs.write_text("{not json")
    with pytest.raises(TrustError, match="fix or remove it"):
        pin_hub_key("hub:1", generate_keypair().public, "hub")
    assert known_hubs.read_text() == "{not json"
