"""The audit log's hash chain: how an entry is hashed and how a chain is verified.

``entry_hash`` is the sha256 of the canonical JSON of every other field of the entry,
``prev_hash`` included, so editing, removing or reordering any entry breaks every later link.
The same functions serve the hub (when appending) and ``moma-hub audit`` (when checking what
the hub returned), so a verifier never re-implements the hashing differently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from moma.trust.canonical import canonical_json

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry."""


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry, independent of its storage (SQL row or protobuf message)."""

    seq: int
    time: str
    actor_key_id: str
    action: str
    subject: str
    detail_json: str
    prev_hash: str
    entry_hash: str


def entry_hash(*, seq: int, time: str, actor_key_id: str, action: str, subject: str,
               detail_json: str, prev_hash: str) -> str:
    """sha256 (hex) of the canonical JSON of an entry's fields other than the hash itself."""
    payload = canonical_json({
        "format": "moma-audit-entry/1",
        "seq": seq,
        "time": time,
        "actor_key_id": actor_key_id,
        "action": action,
        "subject": subject,
        "detail_json": detail_json,
        "prev_hash": prev_hash,
    })
    return hashlib.sha256(payload).hexdigest()


def verify_chain(entries: Iterable[AuditRecord], *, prev_hash: str = GENESIS_HASH,
                 start_seq: int = 1) -> int:
    """Check a run of entries starting at ``start_seq``; return how many were checked.

    Raises :class:`ValueError` naming the first broken entry: a gap in the sequence, a
    ``prev_hash`` that is not the previous entry's hash, or an ``entry_hash`` that does not
    match the entry's content (an edited entry).
    """
    expected_seq = start_seq
    count = 0
    for entry in entries:
        if entry.seq != expected_seq:
            raise ValueError(f"audit entry seq {entry.seq} found where {expected_seq} was "
                             "expected: entries were removed or reordered")
        if entry.prev_hash != prev_hash:
            raise ValueError(f"audit entry {entry.seq}: prev_hash does not match the hash of "
                             "entry before it: the log was altered before this entry")
        actual = entry_hash(seq=entry.seq, time=entry.time, actor_key_id=entry.actor_key_id,
                            action=entry.action, subject=entry.subject,
                            detail_json=entry.detail_json, prev_hash=entry.prev_hash)
        if actual != entry.entry_hash:
            raise ValueError(f"audit entry {entry.seq} ({entry.action} {entry.subject}): its "
                             "content does not match its hash: the entry was edited")
        prev_hash = entry.entry_hash
        expected_seq += 1
        count += 1
    return count
