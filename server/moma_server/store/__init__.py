"""Hub storage: SQL metadata (SQLAlchemy) and content-addressed blobs (filesystem)."""

from moma_server.store import fingerprints as _fingerprints  # noqa: F401  (registers its table)
from moma_server.store.blobs import BlobStore, FileBlobStore
from moma_server.store.metadata import MetadataStore, ReplayError

__all__ = ["BlobStore", "FileBlobStore", "MetadataStore", "ReplayError"]
