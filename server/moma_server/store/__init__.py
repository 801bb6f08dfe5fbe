"""Hub storage: SQL metadata (SQLAlchemy) and content-addressed blobs (filesystem)."""

from moma_server.store.blobs import BlobStore, FileBlobStore
from moma_server.store.metadata import MetadataStore, ReplayError

__all__ = ["BlobStore", "FileBlobStore", "MetadataStore", "ReplayError"]
