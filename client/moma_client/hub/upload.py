"""Contributing a module: sign its manifest for this hub, stream it in chunks, resume, finish.

The manifest (module sha256 and size, card, key id, hub id, nonce, time) is signed once per
upload session. StartUpload consumes its nonce, so a broken transfer is never restarted with
the same manifest: the client asks GetUploadStatus how many bytes the hub holds and streams the
rest into the same session. The session id is also saved (mode 0600, it is a capability) under
``$MOMA_CACHE/uploads/``, so running ``contribute`` again after the process itself died resumes
that session instead of sending everything again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from moma.atomic_io import write_json
from moma.errors import MomaError
from moma.modules.store import MODULE_FILE, load_module
from moma.paths import cache_dir
from moma.proto.hub.v1 import hub_pb2
from moma.trust.chunks import upload_request
from moma.trust.keys import key_id
from moma.trust.manifest import build_manifest, sign_manifest
from moma_client.hub.client import HubClient
from moma_client.hub.connection import RETRYABLE, HubError, describe

DEFAULT_CHUNK = 1024 * 1024
UPLOAD_ATTEMPTS = 6


@dataclass(frozen=True)
class Contribution:
    """What the hub stored: its listing entry (state pending) and whether a session resumed."""

    module: hub_pb2.ModuleSummary
    resumed_from: int


def _session_path(hub_id: str, module_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in hub_id)
    return cache_dir() / "uploads" / f"{safe}-{module_id}.json"


def _load_session(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("upload_id"), str) else None


def contribute(client: HubClient, private_key: Ed25519PrivateKey, module_dir: Path, *,
               chunk_size: int = DEFAULT_CHUNK,
               on_bytes: Callable[[int, int], None] | None = None,
               warn: Callable[[str], None] | None = None) -> Contribution:
    """Upload the module folder ``module_dir`` to ``client``'s hub, signed by ``private_key``."""
    module = load_module(module_dir)  # every check the hub will make, before any byte moves
    data = (module.path / MODULE_FILE).read_bytes()
    module_id = module.module_id
    kid = key_id(private_key.public_key())
    if module.card.contributor_key_id not in (None, "", kid):
        raise MomaError(f"{module_dir}: card names contributor key {module.card.contributor_key_id}"
                        f" but the key given is {kid}: contribute with that lab's key")
    limit = int(client.info.max_module_size)
    if limit and len(data) > limit:
        raise MomaError(f"{module_dir}: module is {len(data)} bytes, over hub "
                        f"{client.hub_id}'s maximum of {limit}: ask the operator")
    chunk = max(1, min(chunk_size, int(client.info.chunk_size) or DEFAULT_CHUNK))
    session_file = _session_path(client.hub_id, module_id)
    session = _load_session(session_file)
    upload_id, resumed_from = "", 0
    if session is not None and session.get("hub_address") == client.address:
        upload_id = session["upload_id"]
        try:
            status = client.stub.GetUploadStatus(
                hub_pb2.GetUploadStatusRequest(upload_id=upload_id), timeout=60)
            if status.module_id != module_id:
                upload_id = ""
            else:
                resumed_from = int(status.offset)
                if warn is not None:
                    warn(f"resuming upload {upload_id[:8]}... of module {module_id[:12]} at "
                         f"byte {resumed_from} of {len(data)}")
        except grpc.RpcError:
            upload_id = ""  # expired or unknown: start a new, freshly signed session
    if not upload_id:
        card = replace(module.card, module_id=module_id, contributor_key_id=kid).to_json()
        manifest = build_manifest(module_sha256=module_id, module_size=len(data), card=card,
                                  contributor_key_id=kid, hub_id=client.hub_id)
        signed = sign_manifest(manifest, private_key)
        start = client.call("StartUpload", hub_pb2.StartUploadRequest(
            signed_manifest=hub_pb2.SignedManifest(manifest=signed.manifest_bytes,
                                                   signature=signed.signature)),
            f"starting the upload of module {module_id}")
        upload_id = start.upload_id
        if start.chunk_size:
            chunk = min(chunk, int(start.chunk_size))
        write_json(session_file, {"hub_address": client.address, "hub_id": client.hub_id,
                                  "module_id": module_id, "upload_id": upload_id,
                                  "expires_at": start.expires_at}, 0o600)
    _send_all(client, upload_id, data, chunk, on_bytes, warn)
    try:
        done = client.call("FinishUpload", hub_pb2.FinishUploadRequest(upload_id=upload_id),
                           f"finishing the upload of module {module_id}")
    except HubError as exc:
        if exc.code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
                            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.DATA_LOSS,
                            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.NOT_FOUND):
            raise  # possibly transient: keep the session file so a re-run resumes
        session_file.unlink(missing_ok=True)
        raise
    session_file.unlink(missing_ok=True)
    return Contribution(done.module, resumed_from)


def _requests(upload_id: str, data: bytes, start: int, chunk: int
              ) -> Iterator[hub_pb2.UploadRequest]:
    for offset in range(start, len(data), chunk):
        yield upload_request(upload_id, offset, data[offset:offset + chunk])


def _send_all(client: HubClient, upload_id: str, data: bytes, chunk: int,
              on_bytes: Callable[[int, int], None] | None,
              warn: Callable[[str], None] | None = None) -> None:
    """Stream the bytes the hub does not hold yet, asking where to resume after each failure."""
    failures = 0
    while True:
        try:
            status = client.stub.GetUploadStatus(
                hub_pb2.GetUploadStatusRequest(upload_id=upload_id), timeout=60)
            held = int(status.offset)
            if on_bytes is not None:
                on_bytes(held, len(data))
            if held >= len(data):
                return
            timeout = 60.0 + (len(data) - held) / (1024 * 1024)  # >= 1 MiB/s, plus slack
            reply = client.stub.Upload(_requests(upload_id, data, held, chunk), timeout=timeout)
            if on_bytes is not None:
                on_bytes(int(reply.offset), len(data))
            if int(reply.offset) >= len(data):
                return
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            failures += 1
            retry = code in RETRYABLE or code in (grpc.StatusCode.FAILED_PRECONDITION,
                                                  grpc.StatusCode.DATA_LOSS)
            if not retry or failures >= UPLOAD_ATTEMPTS:
                raise describe(exc, f"uploading session {upload_id[:8]}...",
                               client.address) from None
            if warn is not None:
                warn(f"upload interrupted ({code.name if code else 'error'}); resuming from "
                     "the offset the hub holds")
            time.sleep(min(0.5 * 2 ** failures, 8.0))


__all__ = ["DEFAULT_CHUNK", "Contribution", "contribute"]
