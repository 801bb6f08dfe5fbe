"""The hub's countersignature: "manifest X (module Y) is in state S since T", signed.

On approval the hub countersigns the manifest's digest with its own key; downstream clients
pin the hub's public key and check both signatures before using a module.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from moma.errors import TrustError
from moma.trust.canonical import canonical_json, format_utc
from moma.trust.keys import key_id, sign, verify
from moma.trust.manifest import SignedManifest, parse_manifest

COUNTERSIGNATURE_FORMAT = "moma-countersignature/1"


@dataclass(frozen=True)
class Countersignature:
    """The hub's statement "manifest X (module Y) is in state S since T", signed by its key."""

    manifest_sha256: str
    module_sha256: str
    state: str
    time: str
    hub_key_id: str
    signature: bytes = field(repr=False)

    def payload(self) -> bytes:
        """The canonical bytes the hub signs (every field but the signature, plus the format)."""
        return canonical_json(
            {
                "format": COUNTERSIGNATURE_FORMAT,
                "manifest_sha256": self.manifest_sha256,
                "module_sha256": self.module_sha256,
                "state": self.state,
                "time": self.time,
                "hub_key_id": self.hub_key_id,
            }
        )


def countersign(
    signed: SignedManifest,
    hub_private_key: Ed25519PrivateKey,
    *,
    state: str = "approved",
    now: datetime | None = None,
) -> Countersignature:
    """The hub's signature over a (verified) manifest's digest, its state and the time."""
    manifest = parse_manifest(signed.manifest_bytes)
    unsigned = Countersignature(
        manifest_sha256=signed.manifest_sha256,
        module_sha256=manifest.module_sha256,
        state=state,
        time=format_utc(now if now is not None else datetime.now(UTC)),
        hub_key_id=key_id(hub_private_key.public_key()),
        signature=b"",
    )
    return Countersignature(
        **{**asdict(unsigned), "signature": sign(hub_private_key, unsigned.payload())}
    )


def verify_countersignature(
    countersignature: Countersignature,
    signed: SignedManifest,
    hub_public_key: Ed25519PublicKey,
    *,
    accepted_states: Container[str] = ("approved",),
) -> None:
    """Check that the pinned hub key countersigned exactly this manifest, in an accepted state."""
    pinned = key_id(hub_public_key)
    if countersignature.hub_key_id != pinned:
        raise TrustError(
            f"countersigned by hub key {countersignature.hub_key_id}, but the pinned hub key is "
            f"{pinned}: check you are talking to the right hub, or update the pinned key"
        )
    if not verify(hub_public_key, countersignature.payload(), countersignature.signature):
        raise TrustError(
            f"bad hub countersignature for module {countersignature.module_sha256}: "
            "the hub's statement was altered; do not use this module"
        )
    if countersignature.manifest_sha256 != signed.manifest_sha256:
        raise TrustError(
            "hub countersignature covers another manifest: the manifest was swapped in transit; "
            "download the module again"
        )
    module_sha256 = parse_manifest(signed.manifest_bytes).module_sha256
    if countersignature.module_sha256 != module_sha256:
        raise TrustError(
            f"hub countersignature names module {countersignature.module_sha256}, the manifest "
            f"{module_sha256}: do not use this module"
        )
    if countersignature.state not in accepted_states:
        raise TrustError(
            f"module {module_sha256} is {countersignature.state!r} at the hub, not approved: "
            "choose another module"
        )
