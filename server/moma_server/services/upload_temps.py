"""Where an upload's partial bytes are held, and what the resume offset is, per kind of store.

* :class:`FileTemps` (the embedded default): one temp file per session, appended by the single
  hub process that owns the store folder; the file's size is the resume offset.
* :class:`SharedTemps` (an object store shared by replicas): the stream buffers up to the
  store's ``part_bytes``, writes an immutable part object, then records it with a
  compare-and-set on the session's offset in the database. The database is the truth: any
  replica reads the offset and the part list from it, and of two streams racing on one session
  exactly one extends it; the other removes its part and is told to resume.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from moma_server.services.errors import precondition
from moma_server.services.hub import Hub
from moma_server.store.models import UploadSessionRow


class TempWriter(ABC):
    """Appends the checked chunks of one stream; :meth:`close` makes them durable."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> int:
        """Make what was written durable; returns the bytes the session holds now."""


class TempBytes(ABC):
    """The partial bytes of upload sessions in one kind of blob store."""

    keep_in_memory: bool = True
    """Whether a stream keeps its chunks for FinishUpload (else FinishUpload reads the store;
    the running sha256 is kept either way: see :mod:`moma_server.services.upload_progress`)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @abstractmethod
    def held(self, row: UploadSessionRow) -> int:
        """Bytes held for the session (its resume offset)."""

    @abstractmethod
    def read(self, row: UploadSessionRow) -> bytes:
        """Every byte held for the session (at most its declared size)."""

    @abstractmethod
    def writer(self, row: UploadSessionRow, held: int) -> TempWriter:
        """A writer appending at ``held``."""

    def discard(self, upload_id: str) -> None:
        self.hub.blobs.discard_temp(upload_id)


def temps_for(hub: Hub) -> TempBytes:
    return SharedTemps(hub) if hub.blobs.shared else FileTemps(hub)


class _FileWriter(TempWriter):
    def __init__(self, hub: Hub, upload_id: str) -> None:
        self.hub, self.upload_id = hub, upload_id
        self.handle: BinaryIO | None = None  # opened on the first good chunk: no empty files

    def write(self, data: bytes) -> None:
        if self.handle is None:
            self.handle = self.hub.blobs.open_temp_append(self.upload_id)
        view = memoryview(data)
        while view:
            written = self.handle.write(view)
            view = view[written or 0:]

    def close(self) -> int:
        # The file is the session's truth here (its size is the resume offset), so nothing is
        # written to the database: recording the offset cost every stream a SQLite commit and
        # its fsync that no reader used (the session row's offset counts only on shared stores).
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None
        return self.hub.blobs.temp_size(self.upload_id)


class FileTemps(TempBytes):
    """One temp file per session in a store only this process writes."""

    keep_in_memory = False  # the file just written is in the page cache: read it back

    def held(self, row: UploadSessionRow) -> int:
        return self.hub.blobs.temp_size(row.upload_id)

    def read(self, row: UploadSessionRow) -> bytes:
        return self.hub.blobs.read_temp(row.upload_id, row.size)

    def writer(self, row: UploadSessionRow, held: int) -> TempWriter:
        return _FileWriter(self.hub, row.upload_id)


class _PartWriter(TempWriter):
    """Parts of ``part_bytes``, each put and recorded while the stream goes on receiving.

    One part is in flight at a time (on its own thread: the S3 client and the database driver
    release the GIL while they wait), so receiving the next part overlaps writing the last one
    and memory stays at two parts per stream. Parts are recorded in order; the first failure
    is raised by the next :meth:`write` or by :meth:`close`.
    """

    def __init__(self, hub: Hub, upload_id: str, held: int) -> None:
        self.hub, self.upload_id, self.offset = hub, upload_id, held
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.in_flight: Future[None] | None = None
        self.in_flight_data = b""
        self.pool: ThreadPoolExecutor | None = None

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes >= self.hub.blobs.part_bytes:
            self._submit()

    def _submit(self) -> None:
        self._wait()  # one part in flight: the one before must be recorded first
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending, self.pending_bytes = [], 0
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moma-hub-part")
        self.in_flight_data = data
        self.in_flight = self.pool.submit(self._put, self.offset, data)

    def _wait(self) -> None:
        if self.in_flight is None:
            return
        done, self.in_flight = self.in_flight, None
        try:
            done.result()
        except BaseException:
            # not recorded: its bytes go back in front of what came after them, so a later
            # close() (which keeps what a broken stream delivered) writes them in order
            self.pending.insert(0, self.in_flight_data)
            self.pending_bytes += len(self.in_flight_data)
            raise
        finally:
            self.in_flight_data = b""

    def _put(self, offset: int, data: bytes) -> None:
        blobs = self.hub.blobs
        key = blobs.write_part(self.upload_id, offset, data)
        if not self.hub.metadata.advance_upload(self.upload_id, offset, len(data), key):
            blobs.remove_part(key)
            raise precondition(f"upload {self.upload_id} was extended by another stream (or "
                               "finished) while this one wrote: ask GetUploadStatus for the "
                               "offset the hub holds and resume from there")
        self.offset = offset + len(data)

    def close(self) -> int:
        try:
            self._submit()
            self._wait()
        finally:
            self.pending, self.pending_bytes = [], 0
            if self.pool is not None:
                self.pool.shutdown(wait=True)
                self.pool = None
        return self.offset


class SharedTemps(TempBytes):
    """Part objects recorded in the database: any replica can resume or finish a session."""

    def held(self, row: UploadSessionRow) -> int:
        return int(row.offset)

    def read(self, row: UploadSessionRow) -> bytes:
        parts = self.hub.metadata.upload_parts(row.upload_id)
        expected = 0
        for part in parts:
            if part.offset != expected:
                raise precondition(f"upload {row.upload_id} has a gap at byte {expected}: "
                                   "start a new upload")
            expected += part.size
        return self.hub.blobs.read_parts(row.upload_id, [p.object_key for p in parts], row.size)

    def writer(self, row: UploadSessionRow, held: int) -> TempWriter:
        return _PartWriter(self.hub, row.upload_id, held)
