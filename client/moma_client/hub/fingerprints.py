"""The hub's public fingerprints and probe set, synced into a local cache.

Only two requests are involved, and neither carries anything of the owner's data:
``GetProbeSet`` (no fields) and ``ListFingerprints`` (the last ``seq`` this cache holds and a
page size). Fingerprints never change once the hub stored them, so a second sync asks only
for what came after the cache's last ``seq``: with nothing new it is one small request.

Cache layout: ``$MOMA_CACHE/fingerprints/<hub key id>/<probe set sha256>.npz`` (arrays only,
read with ``allow_pickle=False``) and ``.../<probe set sha256>.probes.json``; both written
atomically. A hub that changes its probe set starts a new file.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moma.atomic_io import atomic_open, write_bytes
from moma.errors import MomaError, TrustError
from moma.modules.card import is_sha256
from moma.paths import cache_dir
from moma.probes.probe_set import ProbeSet, parse_probe_set
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma_client.hub.client import HubClient
from moma_client.hub.connection import call

MAX_FINGERPRINTS = 200_000
"""Fingerprints a cache accepts from one hub (about 0.5 GB at 192 probes): a bound on what a
hostile hub can make the client hold."""
PAGE_SIZE = 1000


@dataclass
class FingerprintTable:
    """Every fingerprint a hub published on one probe set, row-aligned arrays."""

    probe_set_sha256: str
    module_ids: list[str] = field(default_factory=list)
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    predictions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), dtype=np.float16))
    status: list[str] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return int(self.seq.max()) if self.seq.size else 0

    def index(self) -> dict[str, int]:
        return {m: i for i, m in enumerate(self.module_ids)}

    @property
    def nbytes(self) -> int:
        return int(self.predictions.nbytes + self.embedding.nbytes + self.seq.nbytes
                   + 64 * len(self.module_ids))

    def to_npz(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, module_ids=np.array(self.module_ids, dtype="U64"), seq=self.seq,
                 predictions=self.predictions, embedding=self.embedding,
                 status=np.array(self.status, dtype="U16"),
                 probe_set_sha256=np.array(self.probe_set_sha256, dtype="U64"))
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, path: Path) -> FingerprintTable:
        with np.load(path, allow_pickle=False) as data:
            return cls(str(data["probe_set_sha256"]), [str(m) for m in data["module_ids"]],
                       data["seq"].astype(np.int64), data["predictions"].astype(np.float32),
                       data["embedding"].astype(np.float16), [str(s) for s in data["status"]])


@dataclass
class SyncStats:
    """What one sync moved: requests, new fingerprints, bytes received, seconds."""

    requests: int = 0
    new: int = 0
    received_bytes: int = 0
    seconds: float = 0.0


class FingerprintCache:
    """Fingerprints and probe sets of the hubs this client talks to."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "fingerprints"

    def _folder(self, client: HubClient) -> Path:
        return self.root / str(client.info.hub_key_id or "unknown")

    def probe_set(self, client: HubClient) -> ProbeSet:
        """The hub's probe set, from the cache or ``GetProbeSet``, checked against the sha256
        that ``GetHubInfo`` announced."""
        expected = str(client.info.probe_set_sha256)
        if not is_sha256(expected):
            raise MomaError(f"hub {client.hub_id} announces no probe set, so it publishes no "
                            "fingerprints: compose with --preselect none")
        path = self._folder(client) / f"{expected}.probes.json"
        if path.is_file():
            probe_set = parse_probe_set(path.read_bytes(), source=str(path))
            if probe_set.sha256 == expected:
                return probe_set
        stub = hub_pb2_grpc.FingerprintServiceStub(client.channel)
        reply = call(stub.GetProbeSet, hub_pb2.GetProbeSetRequest(), "probe set",
                     client.address)
        data = bytes(reply.probe_set_json)
        if hashlib.sha256(data).hexdigest() != expected:
            raise TrustError(f"hub {client.hub_id} sent a probe set whose sha256 is not the "
                             f"{expected} it announced: do not use this hub's fingerprints")
        probe_set = parse_probe_set(data, source=f"probe set of hub {client.hub_id}")
        write_bytes(path, data)
        return probe_set

    def load(self, client: HubClient) -> FingerprintTable:
        expected = str(client.info.probe_set_sha256)
        path = self._folder(client) / f"{expected}.npz"
        if path.is_file():
            try:
                table = FingerprintTable.from_npz(path)
                if table.probe_set_sha256 == expected:
                    return table
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is rebuilt by the next sync
        return FingerprintTable(expected)

    def sync(self, client: HubClient, probes: int) -> tuple[FingerprintTable, SyncStats]:
        """Bring the cached table up to date with the hub (only what is new is requested)."""
        start = time.perf_counter()
        table = self.load(client)
        stats = SyncStats()
        stub = hub_pb2_grpc.FingerprintServiceStub(client.channel)
        ids, seqs, preds, embs, status = [], [], [], [], []
        after = table.last_seq
        known = set(table.module_ids)
        while True:
            reply = call(stub.ListFingerprints,
                         hub_pb2.ListFingerprintsRequest(after_seq=after, page_size=PAGE_SIZE),
                         "fingerprints", client.address)
            stats.requests += 1
            stats.received_bytes += reply.ByteSize()
            for fp in reply.fingerprints:
                if fp.seq <= after:
                    raise TrustError(f"hub {client.hub_id} sent fingerprints out of order "
                                     f"(seq {fp.seq} after {after}): do not use this hub")
                after = fp.seq
                if fp.probe_set_sha256 != table.probe_set_sha256 or fp.module_id in known:
                    continue
                if fp.probes != probes or len(fp.predictions) != 4 * probes \
                        or len(fp.embedding) != 2 * probes * fp.embedding_dims:
                    continue  # malformed: this module is simply not pre-ranked
                ids.append(fp.module_id)
                seqs.append(fp.seq)
                preds.append(np.frombuffer(fp.predictions, dtype="<f4"))
                embs.append(np.frombuffer(fp.embedding, dtype="<f2")
                            .reshape(probes, fp.embedding_dims))
                status.append(fp.summary.status)
                known.add(fp.module_id)
                if len(known) > MAX_FINGERPRINTS:
                    raise MomaError(f"hub {client.hub_id} publishes over {MAX_FINGERPRINTS} "
                                    "fingerprints: more than this client accepts")
            if not reply.more:
                break
        stats.new = len(ids)
        if ids:
            dims = {e.shape[1] for e in embs} | ({table.embedding.shape[2]}
                                                 if table.module_ids else set())
            if len(dims) != 1:
                raise TrustError(f"hub {client.hub_id} sent fingerprints of different "
                                 "embedding sizes: do not use this hub's fingerprints")
            old = table.module_ids
            table = FingerprintTable(
                table.probe_set_sha256, [*old, *ids],
                np.concatenate([table.seq, np.array(seqs, dtype=np.int64)]),
                np.concatenate([table.predictions.reshape(len(old), probes),
                                np.stack(preds).astype(np.float32)]),
                np.concatenate([table.embedding.reshape(len(old), probes, dims.copy().pop()),
                                np.stack(embs).astype(np.float16)]),
                [*table.status, *status])
        if ids:  # entries skipped at the tail are asked for again next time (a few bytes)
            path = self._folder(client) / f"{table.probe_set_sha256}.npz"
            with atomic_open(path) as handle:
                handle.write(table.to_npz())
        stats.seconds = time.perf_counter() - start
        return table, stats


__all__ = ["FingerprintCache", "FingerprintTable", "SyncStats"]
