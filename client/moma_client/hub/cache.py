"""The local module cache: verified hub modules, keyed by sha256, downloaded once.

Layout under ``$MOMA_CACHE/modules/``::

    <sha256>/module.safetensors   the exact bytes whose sha256 names the folder
    <sha256>/card.json            the contributor-signed card
    <sha256>/provenance.json      signed manifest, contributor key, hub countersignature
    .partial/<sha256>.part        bytes of an unfinished download (resumed from its size)

A folder named by a sha256 appears only complete and verified: bytes stream into a ``.partial``
file (hidden, so module listings never see it), are checked (each chunk's CRC-32 and the
running sha256 of the whole file on the way; then size, sha256, contributor signature, hub
countersignature with the pinned key, schema, finite weights), assembled in a hidden staging
folder (the partial file is moved there, not copied) and renamed into place in one step. A broken
connection resumes from the bytes already on disk; anything that fails a check is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from moma.atomic_io import fsync_dir, write_json
from moma.errors import ModuleFormatError, MomaError, TrustError
from moma.modules.card import ModuleCard, is_sha256
from moma.modules.safetensors_check import MAX_MODULE_BYTES
from moma.modules.store import LoadedModule, adopt_module_file, load_module
from moma.paths import cache_dir
from moma.trust.chunks import chunk_intact
from moma_client.hub.client import HubClient, VerifiedRecord, verify_record
from moma_client.hub.connection import RETRYABLE, HubError, describe

PROVENANCE_FILE = "provenance.json"
DOWNLOAD_ATTEMPTS = 4


def default_cache() -> Path:
    """``$MOMA_CACHE/modules`` (created on demand)."""
    return cache_dir() / "modules"


@dataclass(frozen=True)
class Fetched:
    """A module available locally: where, and whether this call moved any bytes."""

    path: Path
    module: LoadedModule
    downloaded_bytes: int
    from_cache: bool


class ModuleCache:
    """Verified modules by sha256; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache()
        self.partial = self.root / ".partial"

    def path(self, module_id: str) -> Path:
        if not is_sha256(module_id):
            raise MomaError(f"module id {module_id!r} is not a sha256: use the 64-hex-digit id")
        return self.root / module_id

    def cached(self, module_id: str) -> LoadedModule | None:
        """The cached module if present and intact (an altered copy is removed)."""
        folder = self.path(module_id)
        if not folder.is_dir():
            return None
        try:
            module = load_module(folder)
        except MomaError:
            shutil.rmtree(folder, ignore_errors=True)  # fetched again, verified, below
            return None
        if module.module_id != module_id:
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return module

    def fetch(self, client: HubClient, module_id: str, *,
              expected: VerifiedRecord | None = None,
              on_bytes: Callable[[int, int], None] | None = None) -> Fetched:
        """The module from the cache, or downloaded from ``client``'s hub and verified.

        ``expected``: the record GetCard returned; the download must carry the same manifest.
        """
        module = self.cached(module_id)
        if module is not None:
            return Fetched(module.path, module, 0, True)
        self.partial.mkdir(parents=True, exist_ok=True)
        part = self.partial / f"{module_id}.part"
        with _locked(self.partial / f"{module_id}.lock"):
            module = self.cached(module_id)  # another process may have finished it meanwhile
            if module is not None:
                return Fetched(module.path, module, 0, True)
            start = part.stat().st_size if part.exists() else 0
            received = _download(client, module_id, part, expected, on_bytes)
            moved = part.stat().st_size - start
            try:
                module = self._install(client, module_id, part, received)
            except MomaError:
                part.unlink(missing_ok=True)
                raise
            part.unlink(missing_ok=True)
        return Fetched(module.path, module, moved, False)

    def _install(self, client: HubClient, module_id: str, part: Path,
                 received: Received) -> LoadedModule:
        actual = received.hasher.hexdigest()
        if actual != module_id or len(received.data) != part.stat().st_size:
            raise TrustError(f"downloaded bytes of module {module_id} hash to {actual}: the "
                             "download was corrupted or altered; run the command again")
        record = received.record
        card = ModuleCard.from_json(record.manifest.card, source=f"card of module {module_id}")
        staging = self.partial / f"{module_id}.{secrets.token_hex(6)}.dir"
        try:
            write_json(staging / PROVENANCE_FILE, record.provenance(client.hub_id, client.address))
            loaded = adopt_module_file(staging, part, bytes(received.data), card, module_id)
            final = self.path(module_id)
            try:
                os.rename(staging, final)
            except OSError:
                if not final.is_dir():  # not "someone else installed it first"
                    raise
            fsync_dir(self.root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return LoadedModule(path=final, card=loaded.card, state=loaded.state,
                            module_id=loaded.module_id)


@dataclass
class Received:
    """A download's verified record, and the bytes and running sha256 of its partial file."""

    record: VerifiedRecord
    data: bytearray
    hasher: Any


def _download(client: HubClient, module_id: str, part: Path, expected: VerifiedRecord | None,
              on_bytes: Callable[[int, int], None] | None) -> Received:
    """Append the missing bytes of ``module_id`` to ``part``, resuming after broken streams.

    The bytes are also kept in memory and hashed as they arrive, so the file is neither read
    back nor hashed again; after a broken stream both are rebuilt from the file (the truth).
    """
    record: VerifiedRecord | None = None
    failures = 0
    data, hasher = bytearray(), hashlib.sha256()
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if offset != len(data):  # a partial file from an earlier run, or a cut write
            data, hasher = bytearray(part.read_bytes()), hashlib.sha256()
            hasher.update(data)
        try:
            with part.open("ab") as handle:
                record, size = _stream_into(client, module_id, offset, handle, expected,
                                            on_bytes, data, hasher)
                handle.flush()
                os.fsync(handle.fileno())
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            if code == grpc.StatusCode.OUT_OF_RANGE and offset > 0:
                part.unlink(missing_ok=True)  # a stale partial longer than the module
                continue
            failures += 1
            if code not in RETRYABLE or failures >= DOWNLOAD_ATTEMPTS:
                raise describe(exc, f"downloading module {module_id}", client.address) from None
            time.sleep(min(0.5 * 2 ** failures, 5.0))
            continue
        if part.stat().st_size == size:
            return Received(record, data, hasher)
        failures += 1  # the stream ended early without an error: ask for the rest
        if failures >= DOWNLOAD_ATTEMPTS:
            raise HubError(f"downloading module {module_id}: the hub kept ending the stream "
                           f"early ({part.stat().st_size} of {size} bytes): try again later")


def _stream_into(client: HubClient, module_id: str, offset: int, handle: BinaryIO,
                 expected: VerifiedRecord | None, on_bytes: Callable[[int, int], None] | None,
                 data: bytearray, hasher: Any) -> tuple[VerifiedRecord, int]:
    timeout = 120.0
    record: VerifiedRecord | None = None
    size = held = 0
    for message in client.download_stream(module_id, offset, timeout):
        if record is None:
            if not message.HasField("header"):
                raise TrustError(f"download of module {module_id} did not start with a header: "
                                 "the hub does not follow the protocol")
            header = message.header
            cs = header.countersignature if header.HasField("countersignature") else None
            record = verify_record(module_id, header.signed_manifest,
                                   bytes(header.contributor_public_key), cs, client.hub_key)
            if expected is not None and record.signed != expected.signed:
                raise TrustError(f"module {module_id}: the download carries another manifest "
                                 "than the card: try again; do not use this hub if it persists")
            size = record.manifest.module_size
            if header.module_id != module_id or header.size != size or header.offset != offset:
                raise TrustError(f"download header of module {module_id} does not match its "
                                 f"signed manifest (size {header.size} vs {size}, offset "
                                 f"{header.offset} vs {offset}): try again")
            if size > MAX_MODULE_BYTES:
                raise ModuleFormatError(f"module {module_id} is {size} bytes, over the "
                                        f"{MAX_MODULE_BYTES}-byte limit for modules")
            held = offset
            continue
        if message.HasField("header"):
            raise TrustError(f"download of module {module_id} sent a second header")
        chunk = message.chunk
        piece = chunk.data
        if chunk.offset != held or held + len(piece) > size:
            raise TrustError(f"download of module {module_id}: chunk at offset {chunk.offset} "
                             f"(expected {held}, size {size}): try again")
        if not chunk_intact(chunk, piece):
            raise TrustError(f"download of module {module_id}: chunk at offset {chunk.offset} "
                             "does not match its CRC-32 (altered in transit): try again")
        handle.write(piece)
        data += piece
        hasher.update(piece)
        held += len(piece)
        if on_bytes is not None:
            on_bytes(held, size)
    if record is None:
        raise HubError(f"download of module {module_id}: the hub sent nothing: try again")
    return record, size


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock per module, so two processes never append to one partial file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)



__all__ = ["PROVENANCE_FILE", "Fetched", "ModuleCache", "default_cache"]
