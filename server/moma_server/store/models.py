"""SQLAlchemy 2 tables of the hub's metadata.

Plain, portable column types only (strings, integers, large binaries, text), so the same
models run on SQLite (the default, one file) and PostgreSQL (by URL). Times are stored as the
ISO-8601 UTC strings the protocol shows (``2025-01-31T12:00:00Z``): they sort correctly as
text and are never re-interpreted through a database's time zone settings.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid; BigInteger elsewhere.
_RowId = BigInteger().with_variant(Integer(), "sqlite")

MODULE_STATES = ("pending", "approved", "rejected", "revoked")


class Base(DeclarativeBase):
    """Declarative base of every hub table."""


class ModuleRow(Base):
    """One stored module: its identity, card, manifest, curation state and countersignature."""

    __tablename__ = "modules"

    # Surrogate key: a stable listing order and a compact page token.
    row_id: Mapped[int] = mapped_column(_RowId, primary_key=True, autoincrement=True)
    module_id: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    card_json: Mapped[str] = mapped_column(Text)
    backbone: Mapped[str] = mapped_column(String(64))
    base_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    task: Mapped[str] = mapped_column(Text)  # free text from the card
    property: Mapped[str] = mapped_column(Text)  # free text from the card
    unit: Mapped[str] = mapped_column(Text)  # free text from the card
    created_at: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    contributor_key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"))
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    manifest_signature: Mapped[bytes] = mapped_column(LargeBinary)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[str] = mapped_column(String(32))
    state_changed_at: Mapped[str] = mapped_column(String(32))
    # The hub's countersignature (set on approval; replaced by a signed revocation notice).
    cs_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cs_time: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cs_hub_key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cs_signature: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (
        Index("ix_modules_state_row", "state", "row_id"),
        Index("ix_modules_backbone", "backbone"),
        Index("ix_modules_base", "base_sha256"),
        Index("ix_modules_task", "task"),
        # a filtered listing (task, state, then pages in row order): one index range scan on
        # both databases; SQLite otherwise walked the state index at 10,000 modules
        Index("ix_modules_task_state_row", "task", "state", "row_id"),
    )


class KeyRow(Base):
    """An enrolled contributor (lab) key."""

    __tablename__ = "keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    lab_name: Mapped[str] = mapped_column(Text)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    enrolled_at: Mapped[str] = mapped_column(String(32))
    enrolled_by: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class NonceRow(Base):
    """A nonce already used (manifest or operator request): the primary key refuses a replay."""

    __tablename__ = "nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str] = mapped_column(String(16))
    seen_at: Mapped[str] = mapped_column(String(32), index=True)


class UploadSessionRow(Base):
    """An open upload: the verified manifest and where its partial bytes live."""

    __tablename__ = "upload_sessions"

    upload_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    module_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    manifest_signature: Mapped[bytes] = mapped_column(LargeBinary)
    contributor_key_id: Mapped[str] = mapped_column(String(16))
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    temp_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[str] = mapped_column(String(32))


class UploadPartRow(Base):
    """One recorded part object of an upload on a shared (object) store.

    A part is written to the store first and recorded here in the same transaction that
    advances the session's ``offset`` from the part's start (a compare-and-set), so the parts
    of a session are contiguous from 0 whatever replicas wrote them.
    """

    __tablename__ = "upload_parts"

    upload_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(Text)


class AuditRow(Base):
    """One entry of the append-only, hash-chained audit log (see :mod:`moma_server.store.audit`)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[str] = mapped_column(String(32))
    actor_key_id: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64))
    detail_json: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
