"""The running hub's configuration and state, shared by both services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from moma.trust.keys import key_id, public_key_to_raw
from moma_server.services.defaults import (
    CHUNK_SIZE,
    DEFAULT_MAX_MODULE_BYTES,
    DEFAULT_TOLERANCE_S,
    DEFAULT_UPLOAD_TTL_S,
)
from moma_server.store.blobs import BlobStore
from moma_server.store.metadata import MetadataStore

if TYPE_CHECKING:
    from moma_server.services.fingerprinting import Fingerprinter


@dataclass
class HubConfig:
    """What ``moma-hub serve`` was started with."""

    hub_id: str
    hub_key: Ed25519PrivateKey = field(repr=False)
    operator_keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES
    chunk_size: int = CHUNK_SIZE
    tolerance_s: int = DEFAULT_TOLERANCE_S
    upload_ttl_s: int = DEFAULT_UPLOAD_TTL_S

    @property
    def hub_public_raw(self) -> bytes:
        return public_key_to_raw(self.hub_key.public_key())

    @property
    def hub_key_id(self) -> str:
        return key_id(self.hub_key.public_key())


@dataclass
class Hub:
    """Configuration plus the two stores: everything a servicer needs."""

    config: HubConfig
    metadata: MetadataStore
    blobs: BlobStore
    probes: Fingerprinter | None = None  # the probe set run on every module stored (fingerprints)
