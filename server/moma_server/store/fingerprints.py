"""The fingerprint table: one row per stored module, in an append-only sequence.

``seq`` is the sync cursor of ``ListFingerprints``: a fingerprint is written once, in the
transaction that stores its module, and never changes (the module's bytes cannot), so a client
that holds everything up to ``seq`` n only ever needs rows after n.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from moma_server.store.metadata import MetadataStore
from moma_server.store.models import Base

_Seq = BigInteger().with_variant(Integer(), "sqlite")


class FingerprintRow(Base):
    """A module's fingerprint on the hub's probe set and the probe review's outcome."""

    __tablename__ = "fingerprints"

    seq: Mapped[int] = mapped_column(_Seq, primary_key=True, autoincrement=True)
    module_id: Mapped[str] = mapped_column(String(64), unique=True)
    probe_set_sha256: Mapped[str] = mapped_column(String(64))
    probes: Mapped[int] = mapped_column(Integer)
    predictions: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_dims: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    summary_json: Mapped[str] = mapped_column(Text)
    computed_at: Mapped[str] = mapped_column(String(32))


def add_fingerprint(session: Session, row: FingerprintRow) -> None:
    """Inside the caller's write transaction (the one that stores the module)."""
    session.add(row)


def fingerprints_after(metadata: MetadataStore, after_seq: int, limit: int
                       ) -> tuple[list[FingerprintRow], bool]:
    """Rows with ``seq > after_seq`` in order, at most ``limit``; and whether more exist."""
    query = (select(FingerprintRow).where(FingerprintRow.seq > after_seq)
             .order_by(FingerprintRow.seq).limit(limit + 1))
    with metadata.read() as session:
        rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def fingerprint_of(metadata: MetadataStore, module_id: str) -> FingerprintRow | None:
    with metadata.read() as session:
        return session.scalars(select(FingerprintRow)
                               .where(FingerprintRow.module_id == module_id)).first()
