"""FinishUpload: every check of the complete bytes, then one atomic commit.

Nothing durable is written until every check of DESIGN.md section 6 passed. Then the bytes are
stored under their digest (a rename in a local store, one PUT in an object store), and the
module row, the session's removal and the audit entry commit in one transaction. A crash
between the two leaves a blob no row refers to, which start-up reconciliation sets aside (see
:mod:`moma_server.services.recovery`), so a reader only ever sees nothing or a complete module.

Authorization holds at the moment of commit, not only at StartUpload: inside the commit
transaction the contributor key's row is re-read under a row lock (the lock RevokeKey's update
takes too), and the session row must still exist and be unexpired. An upload started before its
key was revoked is therefore refused with PERMISSION_DENIED however far it got, and of two
FinishUpload calls racing on one session (on two replicas) exactly one commits.
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime
from typing import Any

import grpc
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moma.errors import TrustError
from moma.modules.card import ModuleCard
from moma.trust.manifest import (
    Manifest,
    SignedManifest,
    canonical_json,
    parse_manifest,
    parse_utc,
    verify_payload,
)
from moma_server.services.errors import HubError, denied, invalid, not_found, precondition
from moma_server.services.fingerprinting import probe_module, record_probe
from moma_server.services.upload_sessions import UploadSessions
from moma_server.services.validation import card_of, check_base, check_module_bytes
from moma_server.store.metadata import utc_now
from moma_server.store.models import KeyRow, ModuleRow, UploadSessionRow

_CHECKING = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))
"""Module checks at once: each holds the module and its tensors in memory and uses a core."""


class UploadFinish:
    """FinishUpload over the sessions of :class:`UploadSessions`."""

    def __init__(self, sessions: UploadSessions) -> None:
        self.sessions = sessions
        self.hub = sessions.hub

    def finish(self, upload_id: str) -> ModuleRow:
        row = self.sessions.session(upload_id)
        with self.sessions.exclusive(upload_id):
            return self._finish(row)

    def _finish(self, row: UploadSessionRow) -> ModuleRow:
        upload_id = row.upload_id
        held = self.sessions.temps.held(row)
        if held < row.size:
            raise precondition(f"upload {upload_id} is incomplete: the hub holds {held} of "
                               f"{row.size} bytes: resume with Upload from offset {held}")
        signed = SignedManifest(row.manifest, row.manifest_signature)
        manifest = parse_manifest(row.manifest)
        try:  # fail fast; re-checked atomically at commit
            self._authorized_key(None, manifest)
        except HubError:
            self.sessions.discard(upload_id)  # it can never be finished
            raise
        with _CHECKING:
            card, data = self._checked(row, manifest, held)
        return self._store(row, signed, manifest, card.created, data)

    def _checked(self, row: UploadSessionRow, manifest: Manifest, held: int
                 ) -> tuple[ModuleCard, bytes | bytearray]:
        """Every check of the complete bytes; the session is discarded if one fails."""
        hub, upload_id = self.hub, row.upload_id
        try:
            progress = self.sessions.progress.take(upload_id, held)
            if progress is not None:  # hashed (and maybe kept) while the chunks streamed in
                data: bytes | bytearray = (progress.buffer if progress.keep
                                           else self.sessions.temps.read(row))
                digest = progress.hasher.hexdigest()
            else:  # after a restart, on another replica, or after an eviction: the store
                data = self.sessions.temps.read(row)
                digest = hashlib.sha256(data).hexdigest()
            try:
                verify_payload(manifest, digest, len(data))
            except TrustError as exc:
                raise invalid(f"{exc}; the session was discarded") from None
            card = card_of(manifest)
            check_base(card, manifest.module_sha256, hub.metadata)
            check_module_bytes(data, card, manifest.module_sha256, hub.config.max_module_bytes)
            probe_module(hub, data, card, manifest.module_sha256)
            if hub.metadata.get_module(manifest.module_sha256) is not None:
                raise HubError(grpc.StatusCode.ALREADY_EXISTS,
                               f"module {manifest.module_sha256} was stored meanwhile by another "
                               "upload: nothing to do")
        except HubError:
            self.sessions.discard(upload_id)
            raise
        return card, data

    def _authorized_key(self, session: Session | None, manifest: Manifest) -> None:
        """The contributor key must still be enrolled and unrevoked (row-locked in a commit)."""
        kid = manifest.contributor_key_id
        if session is None:
            key = self.hub.metadata.get_key(kid)
        else:
            key = session.scalars(select(KeyRow).where(KeyRow.key_id == kid)
                                  .with_for_update()).first()
        if key is None or key.revoked_at is not None:
            when = f" at {key.revoked_at}" if key is not None else ""
            raise denied(f"contributor key {kid} was revoked{when}, after this upload started: "
                         "the module was not stored; ask the hub operator, or enroll a new key "
                         "and contribute again")

    def _commit_checks(self, session: Session, row: UploadSessionRow,
                       manifest: Manifest) -> None:
        """What can change while a module is checked, re-read inside the commit transaction."""
        self._authorized_key(session, manifest)
        live = session.scalars(select(UploadSessionRow)
                               .where(UploadSessionRow.upload_id == row.upload_id)
                               .with_for_update()).first()
        if live is None:
            raise not_found(f"upload session {row.upload_id} was finished or discarded by "
                            "another request meanwhile: check the module with GetCard")
        if parse_utc(live.expires_at) < datetime.now(UTC):
            raise not_found(f"upload session {row.upload_id} expired at {live.expires_at}: "
                            "start a new upload with a newly signed manifest")
        existing = session.scalars(select(ModuleRow.state)
                                   .where(ModuleRow.module_id == manifest.module_sha256)).first()
        if existing is not None:
            raise HubError(grpc.StatusCode.ALREADY_EXISTS,
                           f"module {manifest.module_sha256} was stored meanwhile by another "
                           f"upload (state {existing}): nothing to do")

    def _store(self, row: UploadSessionRow, signed: SignedManifest, manifest: Manifest,
               created: str, data: bytes | bytearray) -> ModuleRow:
        hub, sha = self.hub, manifest.module_sha256
        card = manifest.card
        now = utc_now()
        module = ModuleRow(
            module_id=sha, size=manifest.module_size,
            card_json=_card_text(card), backbone=card["backbone"],
            base_sha256=card["base_sha256"], kind=card["kind"], task=card["task"],
            property=card["property"], unit=card.get("unit", ""), created_at=created,
            state="pending", contributor_key_id=manifest.contributor_key_id,
            manifest=signed.manifest_bytes, manifest_signature=signed.signature,
            manifest_sha256=signed.manifest_sha256, submitted_at=now, state_changed_at=now)
        shared = hub.blobs.shared
        # an object store that is down raises UNAVAILABLE here: the session stays, and
        # FinishUpload can be retried
        hub.blobs.commit_temp(row.upload_id, sha, data)
        try:
            with hub.metadata.write() as session:
                self._commit_checks(session, row, manifest)
                hub.metadata.drop_upload(session, row.upload_id)
                session.add(module)
                record_probe(hub, session, sha)
                hub.metadata.append_audit(session, actor=manifest.contributor_key_id,
                                          action="module.submit", subject=sha,
                                          details={"size": manifest.module_size,
                                                   "backbone": module.backbone,
                                                   "kind": module.kind, "task": module.task,
                                                   "manifest_sha256": module.manifest_sha256})
        except IntegrityError:  # another replica committed the same module id first
            raise HubError(grpc.StatusCode.ALREADY_EXISTS,
                           f"module {sha} was stored meanwhile by another upload: nothing to "
                           "do") from None
        except HubError as exc:
            if not shared and hub.metadata.get_module(sha) is None:
                hub.blobs.remove(sha)
            if exc.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
                            grpc.StatusCode.ALREADY_EXISTS) or not shared:
                self.sessions.discard(row.upload_id)
            raise
        except BaseException:
            if not shared:  # the temp file was moved: the session cannot be finished any more
                if hub.metadata.get_module(sha) is None:
                    hub.blobs.remove(sha)
                self.sessions.discard(row.upload_id)
            # a shared store keeps its parts and session: FinishUpload can be retried; a blob
            # without a row is set aside by reconciliation after its grace period
            raise
        if shared:
            self.sessions.temps.discard(row.upload_id)
        return module


def _card_text(card: dict[str, Any]) -> str:
    return canonical_json(card).decode("utf-8")


__all__ = ["UploadFinish"]
