"""The hub's metadata in SQL: modules, keys, nonces, upload sessions and the audit log.

One :class:`MetadataStore` per hub process; several processes (replicas) may share one
PostgreSQL database. Every write goes through :meth:`write`, one transaction under one
process-wide lock. Facts that must hold across replicas are enforced by the database, never by
process memory: nonces and module ids by primary/unique keys, an upload's offset by a
compare-and-set (:meth:`advance_upload`), and the audit log, a hash chain whose appends read the
previous entry's hash, by a transaction-scoped advisory lock on PostgreSQL (SQLite has one
writer at a time anyway), so two replicas approving at once cannot fork it (the primary key on
``seq`` would refuse a fork regardless). A state change and its audit entry are committed in the
same transaction, so the log can never miss a change nor record one that did not happen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, make_url, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from moma.errors import ExitCode, MomaError
from moma.trust.canonical import canonical_json, format_utc
from moma_server.store.audit import GENESIS_HASH, AuditRecord, entry_hash, verify_chain
from moma_server.store.models import (
    AuditRow,
    Base,
    KeyRow,
    ModuleRow,
    NonceRow,
    UploadPartRow,
    UploadSessionRow,
)

AUDIT_LOCK_KEY = 0x6D6F6D61  # "moma": the advisory lock that serializes audit appends



class ReplayError(Exception):
    """A nonce that was already used."""


def utc_now() -> str:
    """Now as the protocol's ISO-8601 UTC string."""
    return format_utc(datetime.now(UTC))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (listings, downloads) run while an upload commits; foreign keys are off
    # by default in SQLite; FULL synchronous makes a commit durable before we answer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    if url.startswith("sqlite"):
        # How long a write waits for a lock before the RPC is answered UNAVAILABLE: 30 s, or
        # the URL's own ``?timeout=SECONDS``.
        timeout = float(make_url(url).query.get("timeout", 30))  # type: ignore[arg-type]
        engine = create_engine(url, connect_args={"timeout": timeout,
                                                  "check_same_thread": False},
                               pool_size=20, max_overflow=40)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=40)


class DatabaseError(MomaError):
    """The metadata database cannot be reached or set up (a configuration problem)."""

    exit_code = ExitCode.NETWORK


def _redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class MetadataStore:
    """Typed access to the hub's tables; rows come back detached and safe to read anywhere."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = make_engine(url)
            Base.metadata.create_all(self.engine)
            for table in Base.metadata.sorted_tables:  # indexes added since a database was made
                for index in table.indexes:
                    index.create(self.engine, checkfirst=True)
        except (SQLAlchemyError, ValueError) as exc:
            raise DatabaseError(
                f"cannot open the hub database {_redacted(url)}: {_first_line(exc)}; check that "
                "the database server is running and the URL (host, port, user, password, "
                "database name) is right, e.g. postgresql+psycopg://moma:PASSWORD@127.0.0.1:5432/"
                "moma, or omit --db for the SQLite file in the store") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (no commit)."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One serialized transaction: committed on success, rolled back on any exception."""
        with self._write_lock, self._sessions() as session, session.begin():
            yield session

    def append_audit(self, session: Session, *, actor: str, action: str, subject: str,
                     details: dict[str, Any] | None = None) -> AuditRow:
        """Add the next audit entry inside the caller's :meth:`write` transaction."""
        if session.get_bind().dialect.name == "postgresql":  # held until this commit ends
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
        last = session.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
        seq = last.seq + 1 if last else 1
        prev = last.entry_hash if last else GENESIS_HASH
        detail_json = canonical_json(details or {}).decode("utf-8")
        time = utc_now()
        row = AuditRow(seq=seq, time=time, actor_key_id=actor, action=action, subject=subject,
                       detail_json=detail_json, prev_hash=prev,
                       entry_hash=entry_hash(seq=seq, time=time, actor_key_id=actor,
                                             action=action, subject=subject,
                                             detail_json=detail_json, prev_hash=prev))
        session.add(row)
        session.flush()
        return row

    # -- nonces -------------------------------------------------------------------------------

    def nonce_seen(self, nonce: str) -> bool:
        with self.read() as session:
            return session.get(NonceRow, nonce) is not None

    def prune_nonces(self, older_than: str) -> int:
        """Forget nonces first seen before ``older_than`` (ISO UTC); returns how many.

        Safe once a nonce is older than twice the time tolerance: a manifest or request
        carrying it is then refused by its issue time whatever the nonce table says.
        """
        with self.write() as session:
            result = session.execute(delete(NonceRow).where(NonceRow.seen_at < older_than))
            return int(getattr(result, "rowcount", 0) or 0)

    def add_nonce(self, session: Session, nonce: str, kind: str, key_id: str) -> None:
        """Record a nonce inside a write transaction; :class:`ReplayError` if already used."""
        if session.get(NonceRow, nonce) is not None:
            raise ReplayError(nonce)
        session.add(NonceRow(nonce=nonce, kind=kind, key_id=key_id, seen_at=utc_now()))
        try:
            session.flush()
        except IntegrityError:
            raise ReplayError(nonce) from None

    def consume_nonce(self, nonce: str, kind: str, key_id: str) -> None:
        """Record a nonce in its own transaction; :class:`ReplayError` if already used."""
        try:
            with self.write() as session:
                self.add_nonce(session, nonce, kind, key_id)
        except IntegrityError:
            raise ReplayError(nonce) from None

    # -- keys ---------------------------------------------------------------------------------

    def get_key(self, key_id: str) -> KeyRow | None:
        with self.read() as session:
            return session.get(KeyRow, key_id)

    def list_keys(self, include_revoked: bool) -> list[KeyRow]:
        with self.read() as session:
            query = select(KeyRow).order_by(KeyRow.enrolled_at, KeyRow.key_id)
            if not include_revoked:
                query = query.where(KeyRow.revoked_at.is_(None))
            return list(session.scalars(query))

    # -- modules ------------------------------------------------------------------------------

    def get_module(self, module_id: str) -> ModuleRow | None:
        with self.read() as session:
            return session.scalars(select(ModuleRow).where(ModuleRow.module_id == module_id)
                                   ).first()

    def lab_names(self, key_ids: Sequence[str]) -> dict[str, str]:
        if not key_ids:
            return {}
        with self.read() as session:
            rows = session.execute(select(KeyRow.key_id, KeyRow.lab_name)
                                   .where(KeyRow.key_id.in_(set(key_ids))))
            return {kid: lab for kid, lab in rows}

    def list_modules(self, *, backbone: str = "", base_sha256: str = "", kind: str = "",
                     task: str = "", states: Sequence[str] = ("approved",), after_row_id: int = 0,
                     limit: int = 100) -> tuple[list[ModuleRow], bool]:
        """Matching modules in ``row_id`` order after ``after_row_id``; and whether more exist."""
        query = select(ModuleRow).where(ModuleRow.row_id > after_row_id,
                                        ModuleRow.state.in_(list(states)))
        for column, value in ((ModuleRow.backbone, backbone), (ModuleRow.base_sha256, base_sha256),
                              (ModuleRow.kind, kind), (ModuleRow.task, task)):
            if value:
                query = query.where(column == value)
        with self.read() as session:
            rows = list(session.scalars(query.order_by(ModuleRow.row_id).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def module_ids(self) -> set[str]:
        with self.read() as session:
            return set(session.scalars(select(ModuleRow.module_id)))

    def count_modules(self) -> int:
        with self.read() as session:
            return int(session.scalar(select(func.count()).select_from(ModuleRow)) or 0)

    # -- upload sessions ----------------------------------------------------------------------

    def get_upload(self, upload_id: str) -> UploadSessionRow | None:
        with self.read() as session:
            return session.get(UploadSessionRow, upload_id)

    def list_uploads(self) -> list[UploadSessionRow]:
        with self.read() as session:
            return list(session.scalars(select(UploadSessionRow)))

    def expired_uploads(self, now: str) -> list[str]:
        """Ids of the sessions whose expiry time (ISO UTC, compared as text) is before ``now``."""
        with self.read() as session:
            return list(session.scalars(select(UploadSessionRow.upload_id)
                                        .where(UploadSessionRow.expires_at < now)))

    def count_uploads(self, contributor_key_id: str) -> int:
        with self.read() as session:
            return int(session.scalar(
                select(func.count()).select_from(UploadSessionRow)
                .where(UploadSessionRow.contributor_key_id == contributor_key_id)) or 0)

    def delete_upload(self, upload_id: str) -> None:
        with self.write() as session:
            self.drop_upload(session, upload_id)

    @staticmethod
    def drop_upload(session: Session, upload_id: str) -> bool:
        """Delete a session and its part rows in the caller's transaction; False if absent."""
        session.execute(delete(UploadPartRow).where(UploadPartRow.upload_id == upload_id))
        result = session.execute(delete(UploadSessionRow)
                                 .where(UploadSessionRow.upload_id == upload_id))
        return bool(getattr(result, "rowcount", 0))

    def advance_upload(self, upload_id: str, offset: int, size: int, object_key: str) -> bool:
        """Record a part written at ``offset`` if the session still holds exactly ``offset``.

        The compare-and-set that makes a shared store's uploads safe across replicas: of two
        streams that wrote a part at the same offset, exactly one is recorded; the other gets
        False and must remove its part.
        """
        with self.write() as session:
            result = session.execute(
                update(UploadSessionRow)
                .where(UploadSessionRow.upload_id == upload_id, UploadSessionRow.offset == offset)
                .values(offset=offset + size))
            if not getattr(result, "rowcount", 0):
                return False
            session.add(UploadPartRow(upload_id=upload_id, offset=offset, size=size,
                                      object_key=object_key))
        return True

    def upload_parts(self, upload_id: str) -> list[UploadPartRow]:
        with self.read() as session:
            return list(session.scalars(select(UploadPartRow)
                                        .where(UploadPartRow.upload_id == upload_id)
                                        .order_by(UploadPartRow.offset)))

    # -- audit --------------------------------------------------------------------------------

    def audit_entries(self, after_seq: int, limit: int) -> tuple[list[AuditRow], bool]:
        with self.read() as session:
            rows = list(session.scalars(select(AuditRow).where(AuditRow.seq > after_seq)
                                        .order_by(AuditRow.seq).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def verify_audit(self) -> int:
        """Check the whole stored chain; returns the number of entries (ValueError if broken)."""
        with self.read() as session:
            rows = session.scalars(select(AuditRow).order_by(AuditRow.seq))
            return verify_chain(to_record(row) for row in rows)


def to_record(row: AuditRow) -> AuditRecord:
    return AuditRecord(seq=row.seq, time=row.time, actor_key_id=row.actor_key_id,
                       action=row.action, subject=row.subject, detail_json=row.detail_json,
                       prev_hash=row.prev_hash, entry_hash=row.entry_hash)


def details(**kwargs: Any) -> dict[str, Any]:
    """Audit details without empty values."""
    return {k: v for k, v in kwargs.items() if v not in (None, "")}


__all__ = ["MetadataStore", "ReplayError", "details", "make_engine", "to_record",
           "utc_now"]
