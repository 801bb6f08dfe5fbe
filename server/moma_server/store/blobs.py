"""Module bytes: a small storage interface and its filesystem implementation.

Blobs are content-addressed (the key is the sha256 of the bytes) and immutable. An upload is
written to a temporary blob named by its session, verified by the hub, and only then committed
under its digest, so a reader can never see a partial module under a module id.

Two ways to hold an upload's partial bytes:
  * a local store (:class:`FileBlobStore`, ``shared = False``): one temp file per session,
    appended to by the one hub process that owns the folder; its size is the resume offset;
  * a shared store (the S3 store, ``shared = True``): immutable *part objects*, one per flushed
    run of chunks, written by any replica; which parts count, and so the resume offset, is
    recorded in the database (see :mod:`moma_server.services.upload_temps`).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from moma.atomic_io import fsync_dir

_SHA256 = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32,64}")


class BlobStore(ABC):
    """Where module bytes live; keys are sha256 hex digests, temp blobs are keyed by upload id."""

    shared: bool = False
    """True if several hub processes may use the store at once (part-based uploads)."""
    part_bytes: int = 0
    """Bytes a shared store's upload buffers before it writes a part (0: local store)."""

    @abstractmethod
    def has(self, sha256: str) -> bool:
        """True if a committed blob with this digest exists."""

    @abstractmethod
    def size(self, sha256: str) -> int:
        """Size in bytes of a committed blob."""

    @abstractmethod
    def iter_range(self, sha256: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        """The committed blob's bytes from ``offset`` on, in pieces of at most ``chunk_size``."""

    @abstractmethod
    def remove(self, sha256: str) -> None:
        """Delete a committed blob (only for one no metadata refers to)."""

    @abstractmethod
    def quarantine(self, sha256: str) -> None:
        """Move a committed blob out of the store without deleting it (orphans at start-up)."""

    @abstractmethod
    def list_blobs(self, older_than_s: float = 0.0) -> list[str]:
        """Digests of committed blobs written at least ``older_than_s`` seconds ago.

        Start-up reconciliation of a shared store passes a grace period, so a blob another
        replica has just committed (its row not yet written) is never taken for an orphan.
        """

    # -- one temp file per upload (local stores) --------------------------------------------

    def temp_size(self, upload_id: str) -> int:
        """Bytes of the temp blob held so far (0 if none): the resume offset of a session."""
        raise NotImplementedError(f"{type(self).__name__} keeps uploads as part objects")

    def open_temp_append(self, upload_id: str) -> BinaryIO:
        """The temp blob opened for appending (created if missing)."""
        raise NotImplementedError(f"{type(self).__name__} keeps uploads as part objects")

    def read_temp(self, upload_id: str, max_bytes: int) -> bytes:
        """All bytes of the temp blob, refusing to read more than ``max_bytes``."""
        raise NotImplementedError(f"{type(self).__name__} keeps uploads as part objects")

    def truncate_temp(self, upload_id: str, size: int) -> None:
        """Cut the temp blob back to ``size`` bytes (drop a chunk that failed its check)."""
        raise NotImplementedError(f"{type(self).__name__} keeps uploads as part objects")

    # -- either kind ------------------------------------------------------------------------

    @abstractmethod
    def discard_temp(self, upload_id: str) -> None:
        """Delete a temp blob if present."""

    @abstractmethod
    def temp_ids(self) -> list[str]:
        """Upload ids of every temp blob present."""

    @abstractmethod
    def commit_temp(self, upload_id: str, sha256: str, data: bytes | bytearray) -> None:
        """Durably store the verified bytes ``data`` of an upload under their digest.

        A local store moves its temp file (whose bytes are ``data``); a shared store writes
        ``data`` as one object. The same digest stored twice is the same bytes: replaced.
        """

    # -- part-based temp bytes (shared stores) ----------------------------------------------

    def write_part(self, upload_id: str, offset: int, data: bytes) -> str:
        """Durably store ``data`` as a new part object of an upload; returns its key."""
        raise NotImplementedError(f"{type(self).__name__} keeps one temp file per upload")

    def read_parts(self, upload_id: str, keys: list[str], max_bytes: int) -> bytes:
        """The concatenated bytes of the part objects ``keys`` (at most ``max_bytes``)."""
        raise NotImplementedError(f"{type(self).__name__} keeps one temp file per upload")

    def remove_part(self, key: str) -> None:
        """Delete one part object (written by a stream that lost the race to record it)."""
        raise NotImplementedError(f"{type(self).__name__} keeps one temp file per upload")


class FileBlobStore(BlobStore):
    """Blobs as files: ``<root>/sha256/ab/cdef...`` and ``<root>/tmp/<upload_id>``.

    The temp folder is inside the same root so the final step is a ``rename`` on one
    filesystem: atomic, and durable once the file and both folders are fsynced.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        """Where the blob of ``sha256`` lives (the digest is checked: it becomes a path)."""
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.blob_dir / sha256[:2] / sha256[2:]

    def temp_path(self, upload_id: str) -> Path:
        """Where the partial bytes of an upload session live."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return self.tmp_dir / upload_id

    def has(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.blob_path(sha256).stat().st_size

    def iter_range(self, sha256: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        with self.blob_path(sha256).open("rb") as handle:
            handle.seek(offset)
            while piece := handle.read(chunk_size):
                yield piece

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.blob_path(sha256).unlink()

    def quarantine(self, sha256: str) -> None:
        target = self.root / "orphaned"
        target.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.blob_path(sha256), target / sha256)

    def list_blobs(self, older_than_s: float = 0.0) -> list[str]:
        found: list[str] = []
        horizon = time.time() - older_than_s
        for sub in self.blob_dir.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                found.extend(sub.name + f.name for f in sub.iterdir()
                             if _SHA256.fullmatch(sub.name + f.name)
                             and (not older_than_s or f.stat().st_mtime <= horizon))
        return sorted(found)

    def temp_size(self, upload_id: str) -> int:
        try:
            return self.temp_path(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    def open_temp_append(self, upload_id: str) -> BinaryIO:
        path = self.temp_path(upload_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        # Unbuffered: every write reaches the kernel at once, so a hub killed mid-stream keeps
        # every byte it acknowledged in the file (the resume offset is the file size).
        return os.fdopen(fd, "ab", buffering=0)

    def read_temp(self, upload_id: str, max_bytes: int) -> bytes:
        with self.temp_path(upload_id).open("rb") as handle:
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ValueError(f"temp blob {upload_id} is over {max_bytes} bytes")
        return data

    def truncate_temp(self, upload_id: str, size: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.temp_path(upload_id), size)

    def discard_temp(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.temp_path(upload_id).unlink()

    def temp_ids(self) -> list[str]:
        return sorted(p.name for p in self.tmp_dir.iterdir() if _UPLOAD_ID.fullmatch(p.name))

    def commit_temp(self, upload_id: str, sha256: str, data: bytes | bytearray) -> None:
        tmp = self.temp_path(upload_id)
        final = self.blob_path(sha256)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        fsync_dir(self.tmp_dir)

