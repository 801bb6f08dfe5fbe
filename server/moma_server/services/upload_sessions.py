"""Upload sessions: a verified manifest opens one, chunk streams fill it, from any replica.

Order of the checks at StartUpload follows what a client can fix and what must not leak: the
manifest is parsed, its key looked up and its signature verified before anything else is
said about it; only then the size limit, duplicates, the card and the base. The nonce is
consumed last, in the same transaction that opens the session, so a refused manifest never
burns one and an accepted one can never open a second session.

Where the partial bytes live and what the resume offset is depends on the blob store
(:mod:`moma_server.services.upload_temps`): a local temp file, or part objects recorded in the
database so that any replica can resume a session another one started. FinishUpload is in
:mod:`moma_server.services.upload_finish`.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc

from moma.errors import TrustError
from moma.proto.hub.v1 import hub_pb2
from moma.trust.chunks import crc32
from moma.trust.keys import public_key_from_raw
from moma.trust.manifest import (
    Manifest,
    SignedManifest,
    format_utc,
    parse_manifest,
    parse_utc,
    verify_manifest,
)
from moma_server.services.errors import (
    HubError,
    denied,
    invalid,
    not_found,
    precondition,
    shown,
    unauthenticated,
)
from moma_server.services.hub import Hub
from moma_server.services.upload_progress import ProgressCache
from moma_server.services.upload_sink import ChunkSink
from moma_server.services.upload_temps import TempBytes, TempWriter, temps_for
from moma_server.services.validation import card_of, check_backbone_ready, check_base
from moma_server.store.metadata import ReplayError, utc_now
from moma_server.store.models import UploadSessionRow

log = logging.getLogger("moma_server")

STATUS_SETTLE_S = 2.0
"""Longest GetUploadStatus waits for a stream of the same session on this process to end."""
MAX_OPEN_UPLOADS_PER_KEY = 64
"""Open sessions a contributor key may hold (each may keep up to the maximum module size)."""


class UploadSessions:
    """StartUpload, Upload and GetUploadStatus, independent of gRPC plumbing."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.temps: TempBytes = temps_for(hub)
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._idle = threading.Condition(self._busy_lock)
        self.progress = ProgressCache()

    # -- StartUpload --------------------------------------------------------------------------

    def verify(self, signed: SignedManifest) -> Manifest:
        """Every manifest check; raises :class:`HubError` with the matching status code."""
        cfg, meta = self.hub.config, self.hub.metadata
        try:
            manifest = parse_manifest(signed.manifest_bytes)
        except TrustError as exc:
            raise invalid(str(exc)) from None
        kid = manifest.contributor_key_id
        key = meta.get_key(kid)
        if key is None:
            raise unauthenticated(f"unknown contributor key {kid}: ask a hub operator to enroll "
                                  "your lab's public key (moma-hub keys enroll)")
        if key.revoked_at is not None:
            raise denied(f"contributor key {kid} ({key.lab_name}) was revoked at "
                         f"{key.revoked_at}: ask the hub operator, or enroll a new key")
        try:
            verify_manifest(signed, {kid: public_key_from_raw(key.public_key)},
                            hub_id=cfg.hub_id, now=datetime.now(UTC),
                            tolerance_s=cfg.tolerance_s, nonce_seen=meta.nonce_seen, revoked=())
        except TrustError as exc:
            raise unauthenticated(str(exc)) from None
        if manifest.module_size > cfg.max_module_bytes:
            raise HubError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"module is {manifest.module_size} bytes, over this hub's maximum of "
                           f"{cfg.max_module_bytes} bytes: ask the operator or shrink the module")
        existing = meta.get_module(manifest.module_sha256)
        if existing is not None:
            raise HubError(grpc.StatusCode.ALREADY_EXISTS,
                           f"module {manifest.module_sha256} is already on this hub (state "
                           f"{existing.state}): nothing to upload")
        card = card_of(manifest)
        check_backbone_ready(card)
        check_base(card, manifest.module_sha256, meta)
        if meta.count_uploads(kid) >= MAX_OPEN_UPLOADS_PER_KEY:
            raise HubError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"key {kid} already has {MAX_OPEN_UPLOADS_PER_KEY} open uploads: "
                           "finish or let them expire before starting more")
        return manifest

    def start(self, signed: SignedManifest) -> UploadSessionRow:
        manifest = self.verify(signed)
        meta = self.hub.metadata
        now = datetime.now(UTC)
        upload_id = secrets.token_hex(16)
        row = UploadSessionRow(
            upload_id=upload_id, module_id=manifest.module_sha256, size=manifest.module_size,
            manifest=signed.manifest_bytes, manifest_signature=signed.signature,
            contributor_key_id=manifest.contributor_key_id, offset=0, temp_path=upload_id,
            created_at=format_utc(now),
            expires_at=format_utc(now + timedelta(seconds=self.hub.config.upload_ttl_s)))
        self.purge_expired()
        try:
            with meta.write() as session:
                meta.add_nonce(session, manifest.nonce, "manifest", manifest.contributor_key_id)
                session.add(row)
        except ReplayError:
            raise unauthenticated(f"replayed manifest: nonce {manifest.nonce} was already used: "
                                  "sign a new manifest") from None
        return row

    def purge_expired(self) -> None:
        """Drop sessions past their expiry time, with their partial bytes."""
        for upload_id in self.hub.metadata.expired_uploads(utc_now()):
            if upload_id not in self._busy:
                self.discard(upload_id)

    def discard(self, upload_id: str) -> None:
        self.progress.forget(upload_id)
        self.hub.metadata.delete_upload(upload_id)
        self.temps.discard(upload_id)

    # -- sessions -----------------------------------------------------------------------------

    def session(self, upload_id: str) -> UploadSessionRow:
        row = self.hub.metadata.get_upload(upload_id) if upload_id else None
        if row is None:
            raise not_found(f"no upload session {shown(upload_id)}: it finished, failed or "
                            "expired; start a new upload with a newly signed manifest")
        if parse_utc(row.expires_at) < datetime.now(UTC):
            self.discard(upload_id)
            raise not_found(f"upload session {upload_id} expired at {row.expires_at}: start a "
                            "new upload with a newly signed manifest")
        return row

    @contextmanager
    def exclusive(self, upload_id: str) -> Iterator[None]:
        """One stream (or FinishUpload) per session at a time in this process.

        Across replicas the database decides: a shared store's parts are recorded by a
        compare-and-set on the offset, and FinishUpload deletes the session row it commits.
        """
        with self._busy_lock:
            if upload_id in self._busy:
                raise precondition(f"upload session {upload_id} is being written by another "
                                   "stream: wait for it to end, then check GetUploadStatus")
            self._busy.add(upload_id)
        try:
            yield
        finally:
            with self._idle:
                self._busy.discard(upload_id)
                self._idle.notify_all()

    def status(self, upload_id: str) -> tuple[UploadSessionRow, int]:
        # A stream of this session that is still running here (its client just dropped, say)
        # may hold checked chunks its writer thread has not written yet: let it settle first,
        # so a client that resumes does not resend what the hub is about to hold.
        with self._idle:
            self._idle.wait_for(lambda: upload_id not in self._busy, timeout=STATUS_SETTLE_S)
        row = self.session(upload_id)
        return row, self.temps.held(row)

    # -- Upload -------------------------------------------------------------------------------

    def append(self, requests: Iterator[hub_pb2.UploadRequest]) -> int:
        """Write the chunks of one stream; returns the bytes held when the stream ends."""
        first = next(requests, None)
        if first is None:
            raise invalid("empty upload stream: send at least one UploadRequest with the "
                          "upload_id from StartUpload")
        upload_id = first.upload_id
        row = self.session(upload_id)
        limit = self.hub.config.chunk_size
        with self.exclusive(upload_id):
            held = self.temps.held(row)
            progress = self.progress.resume(upload_id, held, lambda: self.temps.read(row),
                                            keep=self.temps.keep_in_memory)
            writer = self.temps.writer(row, held)
            sink = ChunkSink(writer, progress)  # hashes and writes while the next chunk arrives
            complete = False
            try:
                request: hub_pb2.UploadRequest | None = first
                while request is not None:
                    data = self._checked_chunk(row, request, held, limit, sink)
                    sink.put(data)
                    held += len(data)
                    request = next(requests, None)
                sink.finish()
                held = writer.close()
                complete = True
            finally:
                if not complete:  # a write may have stopped half-way: trust only the store
                    self.progress.forget(upload_id)
                    self._keep_received(sink, writer)
            self.progress.trim()
        return held

    def _keep_received(self, sink: ChunkSink, writer: TempWriter) -> None:
        """After a broken stream, keep the checked chunks it delivered (resume from there)."""
        sink.settle()  # the chunks already checked and queued are written first
        try:
            writer.close()
        except HubError:
            pass  # the session was discarded or extended elsewhere: its offset says where
        except Exception:  # the original error is the one to report
            log.warning("could not keep the bytes of a broken upload stream", exc_info=True)

    def _checked_chunk(self, row: UploadSessionRow, request: hub_pb2.UploadRequest,
                       held: int, limit: int, sink: ChunkSink) -> bytes:
        """The chunk's bytes if they may be appended at ``held``; HubError otherwise."""
        if request.upload_id != row.upload_id:
            raise invalid(f"upload stream mixes sessions ({row.upload_id} then "
                          f"{shown(request.upload_id)}): use one stream per session")
        chunk = request.chunk
        data = chunk.data  # the one copy out of the message (each read of the field copies)
        if chunk.offset != held:
            raise precondition(f"chunk starts at offset {chunk.offset} but the hub holds {held} "
                               f"bytes of upload {row.upload_id}: resume from offset {held}")
        if len(data) > limit:
            raise invalid(f"chunk of {len(data)} bytes is over the hub's chunk size of {limit}: "
                          "send smaller chunks")
        if not chunk.HasField("crc32"):
            raise invalid(f"chunk at offset {chunk.offset} has no crc32: every chunk carries "
                          "zlib's CRC-32 of its data (moma.trust.chunks.make_chunk)")
        if crc32(data) != chunk.crc32:
            raise HubError(grpc.StatusCode.DATA_LOSS,
                           f"chunk at offset {chunk.offset} does not match its CRC-32 (altered "
                           f"in transit): the chunk was dropped; resend it from offset {held}")
        if held + len(data) > row.size:
            sink.settle()  # nothing may write the session's bytes after they are removed
            self.discard(row.upload_id)
            raise invalid(f"upload {row.upload_id} sent {held + len(data)} bytes but the signed "
                          f"manifest says {row.size}: the session was discarded; upload the "
                          "exact file that was signed with a new manifest")
        return data
