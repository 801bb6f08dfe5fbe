"""Hash and write an upload's checked chunks on a second thread while the next one arrives.

Why: per byte, an upload stream costs the hub its protobuf parse and CRC-32 check (on the
thread that receives), then the sha256 and the write to the temporary store. Done in turn on one
thread, they made the hub's stream about a third of what a bare stream that only hashes and
fsyncs achieves; hashlib, zlib and file writes release the GIL on megabyte buffers, so the two
halves overlap on two cores. The queue holds a few chunks, so memory per stream stays bounded,
and chunks are written in the order they were checked.
"""

from __future__ import annotations

import contextlib
import queue
import threading

from moma_server.services.upload_progress import Progress
from moma_server.services.upload_temps import TempWriter

DEPTH = 4
"""Checked chunks waiting for the writer thread (about 4 MiB per stream)."""
_END = object()


class ChunkSink:
    """Feeds ``progress`` (sha256) and ``writer`` from a thread of its own, in order."""

    def __init__(self, writer: TempWriter, progress: Progress) -> None:
        self.writer, self.progress = writer, progress
        self._queue: queue.Queue[object] = queue.Queue(maxsize=DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="moma-hub-upload-sink",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is _END:
                return
            if self._error is not None or not isinstance(data, bytes):
                continue  # drain: the stream is told at its next put() or at finish()
            try:
                self.writer.write(data)
                self.progress.add(data)
            except BaseException as exc:
                self._error = exc

    def put(self, data: bytes) -> None:
        """Queue a checked, non-empty chunk; raises the writer's error if it failed."""
        if self._error is not None:
            raise self._error
        if data:
            self._queue.put(data)

    def settle(self) -> None:
        """:meth:`finish`, for a stream that already failed: the writer's error is not raised
        (what the store holds is what counts)."""
        with contextlib.suppress(BaseException):
            self.finish()

    def finish(self) -> None:
        """Wait until every queued chunk is written; raise the writer's error if any."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if self._error is not None:
            raise self._error
