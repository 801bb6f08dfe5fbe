"""The hub's default limits, in a module of their own: ``moma-hub serve --help`` shows them
without importing the services (SQLAlchemy, cryptography, torch)."""

CHUNK_SIZE = 1024 * 1024
"""Largest Chunk.data the hub sends and accepts: far below gRPC's 4 MiB message limit."""
DEFAULT_MAX_MODULE_BYTES = 256 * 1024 * 1024
DEFAULT_TOLERANCE_S = 300
DEFAULT_UPLOAD_TTL_S = 24 * 3600
