"""What the hub already knows about an upload's bytes while they stream in.

FinishUpload needs the sha256 of the whole file and the bytes themselves (header, schema and
finiteness checks). Reading the temporary file back and hashing it again at the end doubled
the per-byte work of an upload; instead each stream feeds a running sha256 and keeps the bytes
in memory, so FinishUpload starts from a digest and a buffer that are already there.

This is a cache, never the truth: the temporary file is. An entry is used only if it covers
exactly the bytes the file holds (same length, written by this process); after a restart, a
failed write or an eviction the hub falls back to reading and hashing the file. Buffers are
capped by a byte budget (oldest session evicted first), so stalled sessions cannot pin memory.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BUDGET = 512 * 1024 * 1024
"""Bytes of upload buffers kept at once; beyond that the oldest session's buffer is dropped."""


@dataclass
class Progress:
    """A running sha256 and the first ``size`` bytes of one upload's temp file.

    The chunks are kept as the bytes objects they arrived in and joined once, when FinishUpload
    asks: appending each to one growing buffer copied every byte again (and again on each
    reallocation), which cost more than hashing them."""

    hasher: Any = field(default_factory=hashlib.sha256)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, data: bytes) -> None:
        self.hasher.update(data)
        self.chunks.append(data)
        self.size += len(data)

    @property
    def buffer(self) -> bytes:
        """Every byte, joined (once: later calls return the same object)."""
        if len(self.chunks) != 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0]


class ProgressCache:
    """Progress by upload id, bounded by a total byte budget; thread-safe."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._entries: OrderedDict[str, Progress] = OrderedDict()
        self._lock = threading.Lock()

    def resume(self, upload_id: str, held: int, read_prefix: Any) -> Progress:
        """The entry for a stream that starts at ``held``; rebuilt from the file if stale.

        ``read_prefix()`` returns the temp file's current bytes; it is called only when the
        cached entry is missing or does not cover exactly ``held`` bytes.
        """
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        if entry is None or entry.size != held:
            entry = Progress()
            if held:
                entry.add(read_prefix())
        with self._lock:
            self._entries[upload_id] = entry
        return entry

    def trim(self) -> None:
        """Drop the oldest entries until the buffers fit the budget (the newest is kept)."""
        with self._lock:
            total = sum(e.size for e in self._entries.values())
            while total > self.budget and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.size

    def take(self, upload_id: str, held: int) -> Progress | None:
        """Remove and return the entry if it covers exactly ``held`` bytes."""
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        return entry if entry is not None and entry.size == held else None

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._entries.pop(upload_id, None)
