"""Test helpers: a real ``moma-hub serve`` subprocess, signing, uploads and store inspection.

Signing here is written from the protocol's description (hub.proto) with the shared trust
primitives, independently of the server's own code, so a test checks the server against
the contract rather than against itself.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.canonical import canonical_json
from moma.trust.chunks import chunk_intact, make_chunk
from moma.trust.keys import (
    generate_keypair,
    key_id,
    public_key_to_raw,
    save_private_key,
    save_public_key,
)
from moma.trust.manifest import build_manifest, sign_manifest
from moma.trust.operator_auth import operator_auth_payload

MOMA_HUB = str(Path(sys.executable).with_name("moma-hub"))
CHUNK = 1024 * 1024


@dataclass
class Lab:
    """A contributor identity."""

    name: str
    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def new(cls, name: str) -> Lab:
        return cls(name, generate_keypair().private)

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    @property
    def public_raw(self) -> bytes:
        return public_key_to_raw(self.private.public_key())


@dataclass
class HubProcess:
    """One real hub process over a store folder (and a database URL).

    Shared by the server tests and the hub benchmarks (``benchmarks/hub_harness.py``)."""

    root: Path
    hub_id: str = "test-hub"
    tls: tuple[Path, Path] | None = None
    client_ca: Path | None = None
    ca_cert: Path | None = None
    db: str = ""
    store_url: str = ""  # s3://bucket/prefix instead of the local folder (needs db and env)
    keep_port: bool = False  # a restart listens on the same port (behind a balancer)
    max_module_bytes: int = 64 * 1024 * 1024
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    operator: Ed25519PrivateKey = field(default_factory=lambda: generate_keypair().private)
    hub_key: Ed25519PrivateKey = field(default_factory=lambda: generate_keypair().private)

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def operator_key_path(self) -> Path:
        return self.root / "operator.pem"

    def start(self, timeout: float = 240) -> HubProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / "hub_key.pem").exists():
            save_private_key(self.root / "hub_key.pem", self.hub_key)
            save_private_key(self.operator_key_path, self.operator)
            save_public_key(self.root / "operator.pub.pem", self.operator.public_key())
        args = [MOMA_HUB, "serve", "--store", self.store_url or str(self.store),
                "--listen", f"127.0.0.1:{self.port if self.keep_port else 0}",
                "--hub-key", str(self.root / "hub_key.pem"), "--hub-id", self.hub_id,
                "--operator-key", str(self.root / "operator.pub.pem"),
                "--max-module-bytes", str(self.max_module_bytes), *self.extra]
        if self.db:
            args += ["--db", self.db]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
            if self.client_ca:
                args += ["--client-ca", str(self.client_ca)]
        else:
            args.append("--insecure")
        log = (self.root / "hub.log").open("a")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        line = read_line(self.proc, timeout)
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"hub did not start: {line!r}; log:\n"
                               f"{(self.root / 'hub.log').read_text()}")
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def channel(self, client_cert: tuple[bytes, bytes] | None = None) -> grpc.Channel:
        options = [("grpc.max_receive_message_length", 8 * 1024 * 1024)]  # large listings
        if self.tls is None:
            return grpc.insecure_channel(self.address, options=options)
        assert self.ca_cert is not None
        key, cert = client_cert if client_cert else (None, None)
        creds = grpc.ssl_channel_credentials(self.ca_cert.read_bytes(), key, cert)
        return grpc.secure_channel(f"localhost:{self.port}", creds, options=options)

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- direct inspection of what the hub stored -------------------------------------------

    def db_counts(self) -> dict[str, int]:
        with sqlite3.connect(f"file:{self.store / 'hub.db'}?mode=ro", uri=True) as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("modules", "keys", "upload_sessions", "audit_log")}

    def store_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.store)) for p in self.store.rglob("*")
                      if p.is_file() and (p.parts[-2] == "tmp" or "sha256" in p.parts))

    def snapshot(self) -> tuple[dict[str, int], list[str]]:
        return self.db_counts(), self.store_files()


def stop_process(proc: subprocess.Popen[str] | None, timeout: float = 30) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if the process has not exited in ``timeout``."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()  # type: ignore[union-attr]
                                                           ), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


# -- signing ----------------------------------------------------------------------------------


def signed_manifest(lab: Lab, data: bytes, card: dict[str, Any], hub_id: str, *,
                    size: int | None = None, sha256: str | None = None,
                    now: datetime | None = None, nonce: str | None = None
                    ) -> hub_pb2.SignedManifest:
    manifest = build_manifest(module_sha256=sha256 or hashlib.sha256(data).hexdigest(),
                              module_size=len(data) if size is None else size, card=card,
                              contributor_key_id=lab.key_id, hub_id=hub_id,
                              now=now or datetime.now(UTC), nonce=nonce)
    signed = sign_manifest(manifest, lab.private)
    return hub_pb2.SignedManifest(manifest=signed.manifest_bytes, signature=signed.signature)


def operator_call(stub: hub_pb2_grpc.OperatorServiceStub, key: Ed25519PrivateKey, hub_id: str,
                  method: str, request: Message, *, when: int | None = None,
                  nonce: str | None = None) -> Any:
    """Sign ``request`` as hub.proto's OperatorAuth describes and send it."""
    request.ClearField("auth")
    body = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    nonce = nonce or secrets.token_hex(16)
    when = int(time.time()) if when is None else when
    kid = key_id(key.public_key())
    payload = canonical_json({"format": "moma-operator-auth/1",
                              "method": f"/moma.hub.v1.OperatorService/{method}",
                              "body_sha256": body, "nonce": nonce, "time": when,
                              "key_id": kid, "hub_id": hub_id})
    assert payload == operator_auth_payload(method=f"/moma.hub.v1.OperatorService/{method}",
                                            body_sha256=body, nonce=nonce, time_unix=when,
                                            key_id=kid, hub_id=hub_id)
    request.auth.CopyFrom(hub_pb2.OperatorAuth(key_id=kid, nonce=nonce, time=when,
                                               signature=key.sign(payload)))
    return getattr(stub, method)(request, timeout=60)


def chunks(upload_id: str, data: bytes, start: int = 0, size: int = CHUNK
           ) -> Iterator[hub_pb2.UploadRequest]:
    for offset in range(start, len(data), size):
        piece = data[offset:offset + size]
        yield hub_pb2.UploadRequest(upload_id=upload_id, chunk=make_chunk(offset, piece))


def upload(stub: hub_pb2_grpc.ModuleServiceStub, signed: hub_pb2.SignedManifest, data: bytes,
           chunk_size: int = CHUNK, start_timeout: float = 60) -> hub_pb2.FinishUploadResponse:
    """StartUpload, Upload (one stream), FinishUpload.

    ``start_timeout``: a fresh hub builds a backbone's schema on its first StartUpload, which
    takes minutes on a loaded machine."""
    start = stub.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed),
                             timeout=start_timeout)
    if data:
        stub.Upload(chunks(start.upload_id, data, size=chunk_size), timeout=120)
    return stub.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                             timeout=120)


def download(stub: hub_pb2_grpc.ModuleServiceStub, module_id: str, offset: int = 0
             ) -> tuple[hub_pb2.DownloadHeader, bytes]:
    header = None
    parts: list[bytes] = []
    for message in stub.Download(hub_pb2.DownloadRequest(module_id=module_id, offset=offset),
                                 timeout=120):
        if message.HasField("header"):
            header = message.header
        else:
            assert chunk_intact(message.chunk)
            assert message.chunk.offset == offset + sum(map(len, parts))
            parts.append(message.chunk.data)
    assert header is not None
    return header, b"".join(parts)
