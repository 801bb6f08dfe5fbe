"""The upload progress cache: used only when it covers exactly the bytes of the temp file."""

from __future__ import annotations

import hashlib

import pytest

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


def test_hash_only_entries_keep_no_bytes_and_cost_no_budget() -> None:
    cache = ProgressCache(budget=10)
    cache.resume("kept", 0, lambda: b"", keep=True).add(b"k" * 8)
    entry = cache.resume("file", 0, lambda: b"", keep=False)
    entry.add(b"a" * 64)
    assert entry.chunks == [] and entry.kept_bytes == 0
    cache.trim()  # 8 kept bytes fit the budget: the hash-only entry does not count
    again = cache.resume("file", 64, lambda: b"never read", keep=False)
    again.add(b"b")
    taken = cache.take("file", 65)
    assert taken is not None and not taken.keep
    assert taken.hasher.hexdigest() == hashlib.sha256(b"a" * 64 + b"b").hexdigest()
    with pytest.raises(ValueError, match="read them from the store"):
        taken.buffer  # noqa: B018 - the bytes were not kept: the caller reads the store
    assert cache.take("kept", 8) is not None


def test_a_stale_hash_only_entry_is_rehashed_from_the_store() -> None:
    cache = ProgressCache()
    cache.resume("u1", 0, lambda: b"", keep=False).add(b"abc")
    entry = cache.resume("u1", 5, lambda: b"vwxyz", keep=False)
    assert entry.size == 5 and entry.chunks == []
    assert entry.hasher.hexdigest() == hashlib.sha256(b"vwxyz").hexdigest()
