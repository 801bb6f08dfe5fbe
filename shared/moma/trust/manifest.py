"""The contributor's signed module manifest: build, sign, parse strictly, verify.

A lab signs a *manifest*: canonical JSON binding the module bytes (sha256 and size), its card,
the signing key's id, the hub it is meant for (audience), a random nonce and the issue time.
Signatures always cover exact bytes: a verifier checks the signature over the bytes it
received and only then trusts what it parses from them; it never re-serializes and hopes to
get the same bytes. Parsing is strict (canonical form only, no duplicate keys, exactly the
known fields), so two parsers can never read one signed manifest differently.

On approval the hub *countersigns* the manifest's digest with its own key
(:mod:`moma.trust.countersignature`); downstream clients pin the hub's public key and check both
signatures before using a module.

Every signed payload starts with a ``format`` tag (``moma-manifest/1``, ``moma-countersignature/1``,
``moma-operator-auth/1``), so a signature made for one kind of statement can never be
presented as another.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Container, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from moma.errors import TrustError
from moma.trust.canonical import canonical_json, format_utc, parse_utc
from moma.trust.keys import key_id, sign, verify

MANIFEST_FORMAT = "moma-manifest/1"
MAX_MANIFEST_BYTES = 1024 * 1024
"""Largest manifest accepted: cards are small; this keeps a manifest inside one gRPC message."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_MANIFEST_FIELDS = (
    "format",
    "module_sha256",
    "module_size",
    "card",
    "contributor_key_id",
    "hub_id",
    "nonce",
    "issued_at",
)



@dataclass(frozen=True)
class Manifest:
    """What a contributor vouches for: these module bytes, this card, for this hub, now."""

    format: str
    module_sha256: str
    module_size: int
    card: dict[str, Any]
    contributor_key_id: str
    hub_id: str
    nonce: str
    issued_at: str

    def to_bytes(self) -> bytes:
        """The canonical bytes that get signed."""
        return canonical_json(asdict(self))

    @property
    def issued_at_datetime(self) -> datetime:
        """``issued_at`` as an aware UTC datetime."""
        return parse_utc(self.issued_at)


@dataclass(frozen=True)
class SignedManifest:
    """Manifest bytes exactly as signed, and the contributor's 64-byte Ed25519 signature."""

    manifest_bytes: bytes
    signature: bytes

    @property
    def manifest_sha256(self) -> str:
        """Hex sha256 of the manifest bytes: the digest the hub countersigns."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()


def build_manifest(
    *,
    module_sha256: str,
    module_size: int,
    card: Mapping[str, Any],
    contributor_key_id: str,
    hub_id: str,
    now: datetime | None = None,
    nonce: str | None = None,
) -> Manifest:
    """A manifest for one upload, with a fresh random 128-bit nonce unless one is given."""
    manifest = Manifest(
        format=MANIFEST_FORMAT,
        module_sha256=module_sha256,
        module_size=module_size,
        card=dict(card),
        contributor_key_id=contributor_key_id,
        hub_id=hub_id,
        nonce=nonce if nonce is not None else secrets.token_hex(16),
        issued_at=format_utc(now if now is not None else datetime.now(UTC)),
    )
    _check_fields(asdict(manifest))
    canonical_json(manifest.card)
    return manifest


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> SignedManifest:
    """Sign the canonical bytes of ``manifest``; the key must be the one the manifest names."""
    signer = key_id(private_key.public_key())
    if signer != manifest.contributor_key_id:
        raise TrustError(
            f"manifest names contributor key {manifest.contributor_key_id} but is being signed "
            f"with key {signer}: build it with the signing key's id"
        )
    data = manifest.to_bytes()
    return SignedManifest(data, sign(private_key, data))


def parse_manifest(data: bytes) -> Manifest:
    """Strictly parse manifest bytes: canonical JSON holding exactly the manifest fields."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise TrustError(
            f"malformed manifest: {len(data)} bytes exceeds {MAX_MANIFEST_BYTES}: shrink the card"
        )
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise TrustError(
            f"malformed manifest: not valid UTF-8 JSON ({exc}): re-create it"
        ) from None
    if not isinstance(obj, dict):
        raise TrustError("malformed manifest: not a JSON object: re-create it")
    if canonical_json(obj) != data:
        raise TrustError(
            "malformed manifest: not in canonical JSON form: sign the bytes of canonical_json()"
        )
    _check_fields(obj)
    return Manifest(**{name: obj[name] for name in _MANIFEST_FIELDS})


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_fields(obj: Mapping[str, Any]) -> None:
    keys = set(obj)
    if keys != set(_MANIFEST_FIELDS):
        missing = sorted(set(_MANIFEST_FIELDS) - keys)
        extra = sorted(keys - set(_MANIFEST_FIELDS))
        raise TrustError(
            f"malformed manifest: missing fields {missing}, unknown fields {extra}: "
            f"re-create it with this version's {MANIFEST_FORMAT} format"
        )
    if obj["format"] != MANIFEST_FORMAT:
        raise TrustError(
            f"malformed manifest: format {obj['format']!r} is not {MANIFEST_FORMAT!r}: "
            "upgrade moma or re-create the manifest"
        )
    _expect(obj, "module_sha256", _SHA256_RE, "64 lowercase hex characters")
    size = obj["module_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TrustError(f"malformed manifest: module_size {size!r} is not a byte count")
    if not isinstance(obj["card"], dict):
        raise TrustError("malformed manifest: card is not a JSON object")
    _expect(obj, "contributor_key_id", _KEY_ID_RE, "16 lowercase hex characters")
    if not isinstance(obj["hub_id"], str) or not obj["hub_id"]:
        raise TrustError("malformed manifest: hub_id is empty: name the hub it is meant for")
    _expect(obj, "nonce", _NONCE_RE, "32 lowercase hex characters (128 random bits)")
    try:
        parse_utc(obj["issued_at"])
    except TrustError as exc:
        raise TrustError(f"malformed manifest: issued_at: {exc}") from None


def _expect(obj: Mapping[str, Any], name: str, pattern: re.Pattern[str], what: str) -> None:
    value = obj[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise TrustError(f"malformed manifest: {name} {value!r} is not {what}")


# -- verification -------------------------------------------------------------------------------


def verify_manifest_signature(signed: SignedManifest, public_key: Ed25519PublicKey) -> Manifest:
    """Parse ``signed`` and check it was signed by ``public_key`` (the key the manifest names).

    This is the check a downstream client makes on a download, long after upload: no audience,
    time window or nonce (those guard the hub against replays at upload time).
    """
    manifest = parse_manifest(signed.manifest_bytes)
    presented = key_id(public_key)
    if presented != manifest.contributor_key_id:
        raise TrustError(
            f"manifest names contributor key {manifest.contributor_key_id}, but the key given "
            f"has id {presented}: use the contributor's enrolled public key"
        )
    if not verify(public_key, signed.manifest_bytes, signed.signature):
        raise TrustError(
            f"bad signature on manifest for module {manifest.module_sha256} by key "
            f"{manifest.contributor_key_id}: the manifest was altered or signed with another key"
        )
    return manifest


def verify_manifest(
    signed: SignedManifest,
    public_keys_by_id: Mapping[str, Ed25519PublicKey],
    *,
    hub_id: str,
    now: datetime,
    tolerance_s: float,
    nonce_seen: Callable[[str], bool],
    revoked: Container[str],
) -> Manifest:
    """Everything the hub checks on an incoming manifest, in order; returns it if all pass.

    Checks: well-formed, key not revoked, key enrolled, signature, audience is this hub, issue
    time within ``tolerance_s`` of ``now`` (either side: clocks drift both ways), nonce unused.
    ``nonce_seen`` is called last, once, and only for an otherwise valid manifest, so the hub
    may record the nonce in that same call (check-and-set) without invalid manifests burning
    nonces. Nonces must be remembered for at least the tolerance window; older manifests are
    refused by the time check.
    """
    if now.tzinfo is None:
        raise ValueError("verify_manifest needs a timezone-aware `now` (use datetime.now(UTC))")
    manifest = parse_manifest(signed.manifest_bytes)
    kid = manifest.contributor_key_id
    if kid in revoked:
        raise TrustError(
            f"contributor key {kid} has been revoked: ask the hub operator, or enroll a new key"
        )
    public_key = public_keys_by_id.get(kid)
    if public_key is None:
        raise TrustError(
            f"unknown contributor key {kid}: an operator must enroll the lab's public key first"
        )
    verify_manifest_signature(signed, public_key)
    if manifest.hub_id != hub_id:
        raise TrustError(
            f"manifest is for hub {manifest.hub_id!r}, this is hub {hub_id!r}: "
            "sign a new manifest for this hub"
        )
    skew = (manifest.issued_at_datetime - now).total_seconds()
    if abs(skew) > tolerance_s:
        raise TrustError(
            f"manifest issued at {manifest.issued_at}, {skew:+.0f} s from hub time "
            f"{format_utc(now)} (allowed ±{tolerance_s:.0f} s): check the clock and sign a new one"
        )
    if nonce_seen(manifest.nonce):
        raise TrustError(
            f"replayed manifest: nonce {manifest.nonce} was already used: sign a new manifest"
        )
    return manifest


def verify_payload(manifest: Manifest, data_sha256: str, size: int) -> None:
    """Check that the bytes received are the bytes the manifest vouches for."""
    if size != manifest.module_size:
        raise TrustError(
            f"module size {size} does not match the manifest's {manifest.module_size} bytes: "
            "upload the exact file that was signed"
        )
    if data_sha256.lower() != manifest.module_sha256:
        raise TrustError(
            f"module sha256 {data_sha256} does not match the manifest's "
            f"{manifest.module_sha256}: upload the exact file that was signed"
        )
