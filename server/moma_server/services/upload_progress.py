"""What the hub already knows about an upload's bytes while they stream in.

FinishUpload needs the sha256 of the whole file and the bytes themselves (header, schema and
finiteness checks). Reading the temporary bytes back and hashing them again at the end doubled
the per-byte work of an upload; instead each stream feeds a running sha256, so FinishUpload
starts from a digest that is already there.

Whether the bytes are kept in memory too depends on the store (``keep``): an object store's
parts would have to be fetched back over the network, so their chunks are kept and joined once;
a local temp file was just written and sits in the page cache, and reading it back at FinishUpload
costs less than holding every chunk in freshly faulted-in memory while it streams (measured: the
hub's CPU per 64 MiB session fell by about a tenth, docs/hub.md).

This is a cache, never the truth: the temporary bytes are. An entry is used only if it covers
exactly the bytes the store holds (same length, written by this process); after a restart, a
failed write or an eviction the hub falls back to reading and hashing the store's bytes. Kept
buffers are capped by a byte budget (oldest session evicted first), so stalled sessions cannot
pin memory.
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
    """A running sha256 of the first ``size`` bytes of one upload, and those bytes if ``keep``.

    Kept chunks stay the bytes objects they arrived in and are joined once, when FinishUpload
    asks: appending each to one growing buffer copied every byte again (and again on each
    reallocation), which cost more than hashing them."""

    keep: bool = True
    hasher: Any = field(default_factory=hashlib.sha256)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, data: bytes) -> None:
        self.hasher.update(data)
        if self.keep:
            self.chunks.append(data)
        self.size += len(data)

    @property
    def kept_bytes(self) -> int:
        """Bytes this entry holds in memory (what the cache's budget counts)."""
        return self.size if self.keep else 0

    @property
    def buffer(self) -> bytes:
        """Every byte, joined (once: later calls return the same object); needs ``keep``."""
        if not self.keep:
            raise ValueError("this upload's bytes were not kept: read them from the store")
        if len(self.chunks) != 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0]


class ProgressCache:
    """Progress by upload id, bounded by a total byte budget; thread-safe."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._entries: OrderedDict[str, Progress] = OrderedDict()
        self._lock = threading.Lock()

    def resume(self, upload_id: str, held: int, read_prefix: Any, keep: bool = True
               ) -> Progress:
        """The entry for a stream that starts at ``held``; rebuilt from the store if stale.

        ``read_prefix()`` returns the store's current bytes of the upload; it is called only
        when the cached entry is missing or does not cover exactly ``held`` bytes. ``keep``:
        hold the bytes in memory as well as their hash (see the module docstring).
        """
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        if entry is None or entry.size != held or entry.keep != keep:
            entry = Progress(keep=keep)
            if held:
                entry.add(read_prefix())
        with self._lock:
            self._entries[upload_id] = entry
        return entry

    def trim(self) -> None:
        """Drop the oldest entries until the buffers fit the budget (the newest is kept)."""
        with self._lock:
            total = sum(e.kept_bytes for e in self._entries.values())
            while total > self.budget and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.kept_bytes

    def take(self, upload_id: str, held: int) -> Progress | None:
        """Remove and return the entry if it covers exactly ``held`` bytes."""
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        return entry if entry is not None and entry.size == held else None

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._entries.pop(upload_id, None)
