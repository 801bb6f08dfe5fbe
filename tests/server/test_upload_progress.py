"""The upload progress cache: used only when it covers exactly the bytes of the temp file."""

from __future__ import annotations

import hashlib

from moma_server.services.upload_progress import ProgressCache


def test_resume_continues_running_hash() -> None:
    cache = ProgressCache()
    entry = cache.resume("u1", 0, lambda: b"never read")
    entry.add(b"abc")
    again = cache.resume("u1", 3, lambda: b"never read")
    again.add(b"def")
    taken = cache.take("u1", 6)
    assert taken is not None and bytes(taken.buffer) == b"abcdef"
    assert taken.hasher.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    assert cache.take("u1", 6) is None  # taken once


def test_stale_entry_is_rebuilt_from_the_file() -> None:
    cache = ProgressCache()
    cache.resume("u1", 0, lambda: b"").add(b"abc")
    # the file holds 5 bytes the cache never saw (e.g. written before a restart)
    entry = cache.resume("u1", 5, lambda: b"vwxyz")
    assert bytes(entry.buffer) == b"vwxyz"
    assert cache.take("u1", 4) is None  # does not cover the file: the caller reads the file


def test_budget_evicts_oldest_sessions() -> None:
    cache = ProgressCache(budget=10)
    cache.resume("old", 0, lambda: b"").add(b"x" * 8)
    cache.resume("new", 0, lambda: b"").add(b"y" * 8)
    cache.trim()
    assert cache.take("old", 8) is None
    kept = cache.take("new", 8)
    assert kept is not None and bytes(kept.buffer) == b"y" * 8
