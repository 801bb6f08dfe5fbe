"""Key files, key ids and signatures: what a lab's identity rests on."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moma.errors import TrustError
from moma.trust import keys
from moma.trust.keys import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    public_key_from_b64,
    public_key_from_raw,
    public_key_to_b64,
    public_key_to_raw,
    save_private_key,
    save_public_key,
    sign,
    verify,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_sign_verify_round_trip_and_refusals() -> None:
    private, public = generate_keypair()
    other_private, other_public = generate_keypair()
    sig = sign(private, b"module bytes")
    assert len(sig) == 64
    assert verify(public, b"module bytes", sig)
    assert not verify(public, b"module bytez", sig)
    assert not verify(other_public, b"module bytes", sig)
    assert not verify(public, b"module bytes", sig[:-1])
    assert not verify(public, b"module bytes", bytes(64))
    assert sign(other_private, b"x") != sign(private, b"x")


def test_private_key_file_is_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    private, _ = generate_keypair()
    path = tmp_path / "lab.key"
    old = os.umask(0)
    try:
        save_private_key(path, private)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    # Ed25519 is deterministic: same key, same signature.
    assert sign(loaded, b"data") == sign(private, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.key"]  # no temp file left


def test_private_key_is_created_0600_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is born with mode 0600 and O_EXCL: never briefly readable, never a reused file."""
    calls: list[tuple[int, int]] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            calls.append((flags, mode))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(keys.os, "open", recording_open)
    save_private_key(tmp_path / "lab.key", generate_keypair().private)
    assert calls, "the key file must be created with os.open"
    for flags, mode in calls:
        assert flags & os.O_EXCL
        assert mode == 0o600


def test_save_private_key_refuses_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "lab.key"
    first, _ = generate_keypair()
    second, _ = generate_keypair()
    save_private_key(path, first)
    before = path.read_bytes()
    with pytest.raises(TrustError, match="refusing to overwrite existing private key"):
        save_private_key(path, second)
    assert path.read_bytes() == before
    save_private_key(path, second, overwrite=True)
    assert sign(load_private_key(path), b"x") == sign(second, b"x")
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["lab.key"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=lambda m: f"{m:04o}")
def test_load_private_key_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "lab.key"
    save_private_key(path, generate_keypair().private)
    os.chmod(path, mode)
    with pytest.raises(TrustError, match=f"chmod 600 {path}") as info:
        load_private_key(path)
    assert f"{mode:04o}" in str(info.value)
    assert "\n" not in str(info.value)
    os.chmod(path, 0o600)
    load_private_key(path)  # fixed as the message says


def test_load_private_key_refuses_missing_garbage_and_other_algorithms(tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="not found"):
        load_private_key(tmp_path / "absent.key")
    with pytest.raises(TrustError, match="not a regular file"):
        load_private_key(tmp_path)
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a key")
    garbage.chmod(0o600)
    with pytest.raises(TrustError, match="not a PEM PKCS8 private key"):
        load_private_key(garbage)
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec_key.chmod(0o600)
    with pytest.raises(TrustError, match="is not Ed25519"):
        load_private_key(ec_key)


def test_public_key_pem_round_trip(tmp_path: Path) -> None:
    _, public = generate_keypair()
    path = tmp_path / "lab.pub"
    save_public_key(path, public)
    assert _mode(path) == 0o644
    assert public_key_to_raw(load_public_key(path)) == public_key_to_raw(public)
    with pytest.raises(TrustError, match="not found"):
        load_public_key(tmp_path / "absent.pub")
    path.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(TrustError, match="not a PEM public key"):
        load_public_key(path)


def test_public_key_base64_round_trip_and_refusals() -> None:
    _, public = generate_keypair()
    text = public_key_to_b64(public)
    assert len(text) == 44
    assert base64.b64decode(text) == public_key_to_raw(public)
    assert public_key_to_raw(public_key_from_b64(f"  {text}\n")) == public_key_to_raw(public)
    with pytest.raises(TrustError, match="not valid base64"):
        public_key_from_b64("not base64!")
    with pytest.raises(TrustError, match="32 bytes, got 31"):
        public_key_from_b64(base64.b64encode(bytes(31)).decode())
    with pytest.raises(TrustError, match="32 bytes, got 33"):
        public_key_from_raw(bytes(33))


def test_key_id_is_prefix_of_sha256_of_raw_key() -> None:
    _, public = generate_keypair()
    _, other = generate_keypair()
    kid = key_id(public)
    assert kid == hashlib.sha256(public_key_to_raw(public)).hexdigest()[:16]
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert key_id(public_key_from_raw(public_key_to_raw(public))) == kid
    assert key_id(other) != kid
