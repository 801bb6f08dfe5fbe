"""Ed25519 identities: key pairs, key files, key ids, signatures.

Labs, operators and the hub each hold one Ed25519 key pair. Private keys live in PEM (PKCS8,
unencrypted) files that only their owner may read: they are created with mode 0600 from the
first byte, and loading refuses a file that group or others can read, as ssh does, because a
key that others could have copied no longer identifies anyone. Public keys travel as PEM files
or as the raw 32 bytes (base64 in text, plain bytes in protobuf).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from moma.atomic_io import fsync_dir, write_bytes
from moma.errors import TrustError

__all__ = [
    "KEY_ID_HEX_CHARS",
    "KeyPair",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_key_from_b64",
    "public_key_from_raw",
    "public_key_to_b64",
    "public_key_to_raw",
    "save_private_key",
    "save_public_key",
    "sign",
    "verify",
]

KEY_ID_HEX_CHARS = 16
"""Length of a key id: the first 16 hex characters (64 bits) of sha256(raw public key)."""

_RAW_PUBLIC_KEY_BYTES = 32
_MAX_KEY_FILE_BYTES = 64 * 1024


class KeyPair(NamedTuple):
    """A private key and its public half; unpacks as ``private, public = generate_keypair()``."""

    private: Ed25519PrivateKey
    public: Ed25519PublicKey


def generate_keypair() -> KeyPair:
    """Create a fresh Ed25519 key pair from the operating system's random source."""
    private = Ed25519PrivateKey.generate()
    return KeyPair(private, private.public_key())


# -- private keys -------------------------------------------------------------------------------


def save_private_key(path: Path | str, key: Ed25519PrivateKey, *, overwrite: bool = False) -> None:
    """Write ``key`` as unencrypted PEM PKCS8 to ``path``, readable by its owner only.

    The bytes go to a temporary sibling opened with ``O_CREAT | O_EXCL`` and mode 0600, so no
    other user can ever open the file, not even for an instant; it is fsynced and then linked
    into place. Without ``overwrite`` the final step is a hard link, which fails if ``path``
    exists: an existing key (an identity others may have enrolled) is never silently replaced.
    Missing parent folders are created with mode 0700.
    """
    path = Path(path)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if not overwrite and path.exists():
        raise _exists_error(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # a umask can only remove bits; make the mode exact
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        _move_into_place(tmp, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:
        # Filesystems without hard links: check, then rename (a tiny race, never a partial file).
        if path.exists():
            raise _exists_error(path) from None
        os.replace(tmp, path)


def _exists_error(path: Path) -> TrustError:
    return TrustError(
        f"refusing to overwrite existing private key {path}: move it away first, or overwrite "
        "explicitly if that identity is no longer needed"
    )



def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """Read an Ed25519 private key, refusing a file that group or others may read.

    The mode is checked on the opened descriptor, so the file checked is the file read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise TrustError(
            f"private key {path} not found: generate a key pair first or pass the right path"
        ) from None
    except OSError as exc:
        raise TrustError(f"cannot open private key {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise TrustError(f"private key {path} is not a regular file: check the path")
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TrustError(
                f"private key {path} is accessible by group/others "
                f"(mode {stat.S_IMODE(mode):04o}): run `chmod 600 {path}`"
            )
        data = os.read(fd, _MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise TrustError(f"cannot read private key {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise TrustError(f"private key {path} is too large to be a key file: check the path")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TrustError(
            f"private key {path} is encrypted: store it unencrypted with mode 0600"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TrustError(
            f"{path} is not a PEM PKCS8 private key: check the path or generate a new key pair"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(f"private key {path} is not Ed25519: generate a new Ed25519 key pair")
    return key


# -- public keys --------------------------------------------------------------------------------


def save_public_key(path: Path | str, key: Ed25519PublicKey) -> None:
    """Write ``key`` as PEM SubjectPublicKeyInfo (mode 0644: public keys are meant to be shared)."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_bytes(path, pem, 0o644)


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TrustError(f"public key {path} not found: check the path") from None
    except OSError as exc:
        raise TrustError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise TrustError(f"{path} is not a PEM public key: check the path") from None
    if not isinstance(key, Ed25519PublicKey):
        raise TrustError(f"public key {path} is not Ed25519: use the lab's Ed25519 public key")
    return key


def public_key_to_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of ``key`` (the form carried in protobuf messages)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    """Rebuild a public key from its 32 raw bytes."""
    if len(raw) != _RAW_PUBLIC_KEY_BYTES:
        raise TrustError(
            f"an Ed25519 public key is {_RAW_PUBLIC_KEY_BYTES} bytes, got {len(raw)}: "
            "send the raw public key"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_to_b64(key: Ed25519PublicKey) -> str:
    """Standard base64 of the raw public key (44 characters), for configs and command lines."""
    return base64.b64encode(public_key_to_raw(key)).decode("ascii")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Parse the base64 form of :func:`public_key_to_b64`; surrounding whitespace is ignored."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise TrustError(
            "public key is not valid base64: paste the 44-character key exactly as exported"
        ) from None
    return public_key_from_raw(raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short, stable name of a public key: first 16 hex chars of sha256(raw 32-byte key).

    64 bits name a key among the enrolled ones and appear in manifests, logs and listings; they
    are not what security rests on. Signatures are always checked against the full public key
    stored for that id, and the hub refuses to enroll a key whose id is already taken.
    """
    return hashlib.sha256(public_key_to_raw(public_key)).hexdigest()[:KEY_ID_HEX_CHARS]


# -- signatures ---------------------------------------------------------------------------------


def sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``data``."""
    return private_key.sign(data)


def verify(public_key: Ed25519PublicKey, data: bytes, sig: bytes) -> bool:
    """True if ``sig`` is a valid signature of ``data`` by ``public_key``; False, never raises."""
    try:
        public_key.verify(sig, data)
    except InvalidSignature:
        return False
    return True
