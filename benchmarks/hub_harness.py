"""Helpers of ``benchmarks/bench_hub.py``: a real hub process, valid modules, the protocol calls.

Everything here talks to the real ``moma-hub serve`` subprocess on loopback through the
generated stubs (the same approach as ``tests/server/hubtest.py``), and builds modules the
hub really accepts: safetensors files whose tensors match a backbone schema exactly, with a
card the hub parses strictly, signed by an enrolled lab key. Nothing here unpickles.

Module families (all pass every hub check):

* ``cgcnn_base()``: the imported MoE-(18) ``mp_eform`` CGCNN (its own base, 397 kB);
* ``cgcnn_adapter(seed)``: Houlsby adapters for CGCNN declaring that base (75 kB);
* ``chgnet_full(seed, size)``: a full CHGNet 0.3.0 module (1.65 MB of tensors) declaring the
  pretrained CHGNet base, optionally grown to ``size`` bytes with safetensors ``__metadata__``
  (allowed by the format and by the hub up to its 8 MiB header cap). No backbone schema is
  larger than CHGNet full, so ~9.6 MB is the largest module the hub can accept at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

# the hub process harness is shared with the server tests (tests/server/hubtest.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
import safetensors.numpy

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.chunks import chunk_intact, upload_request
from moma.trust.countersignature import Countersignature, verify_countersignature
from moma.trust.keys import (
    public_key_from_raw,
)
from moma.trust.manifest import (
    SignedManifest,
    build_manifest,
    sign_manifest,
    verify_manifest_signature,
)
from tests.server.hubtest import HubProcess, Lab, operator_call, read_line

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1024 * 1024
MIB = 1024 * 1024
HEADER_CAP = 8 * MIB  # moma.modules.safetensors_check.MAX_HEADER_BYTES, used by the hub


# -- the hub process and signed calls: the server tests' harness --------------------------------


def bench_hub(root: Path, db: str = "") -> HubProcess:
    """A real ``moma-hub serve`` process with the benchmarks' settings (quiet log, 256 MiB)."""
    return HubProcess(root, db=db, hub_id="bench-hub", max_module_bytes=256 * MIB,
                      extra=["--log-level", "WARNING"])


def enroll(hub: HubProcess, channel: grpc.Channel, lab: Lab) -> None:
    operator_call(hub_pb2_grpc.OperatorServiceStub(channel), hub.operator, hub.hub_id,
                  "EnrollKey", hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                        public_key=lab.public_raw))


def approve(hub: HubProcess, channel: grpc.Channel, module_id: str) -> None:
    operator_call(hub_pb2_grpc.OperatorServiceStub(channel), hub.operator, hub.hub_id,
                  "ApproveModule", hub_pb2.ApproveModuleRequest(module_id=module_id,
                                                                note="benchmark"))


def signed_manifest(lab: Lab, data: bytes, card: dict[str, Any], hub_id: str
                    ) -> hub_pb2.SignedManifest:
    card = {**card, "contributor_key_id": lab.key_id}
    manifest = build_manifest(module_sha256=hashlib.sha256(data).hexdigest(),
                              module_size=len(data), card=card, contributor_key_id=lab.key_id,
                              hub_id=hub_id, now=datetime.now(UTC))
    signed = sign_manifest(manifest, lab.private)
    return hub_pb2.SignedManifest(manifest=signed.manifest_bytes, signature=signed.signature)


def upload_requests(upload_id: str, data: bytes, size: int = CHUNK
                    ) -> Iterator[hub_pb2.UploadRequest]:
    for offset in range(0, len(data), size):
        yield upload_request(upload_id, offset, data[offset:offset + size])


def contribute(stub: hub_pb2_grpc.ModuleServiceStub, lab: Lab, hub_id: str, data: bytes,
               card: dict[str, Any], timeout: float = 300,
               phases: dict[str, float] | None = None) -> str:
    """What a lab does: sign a manifest, StartUpload, stream the chunks, FinishUpload.

    ``phases`` (if given) accumulates the seconds of each step."""
    t0 = time.perf_counter()
    signed = signed_manifest(lab, data, card, hub_id)
    t1 = time.perf_counter()
    start = stub.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed), timeout=60)
    t2 = time.perf_counter()
    sent = stub.Upload(upload_requests(start.upload_id, data, min(CHUNK, start.chunk_size)),
                       timeout=timeout)
    if sent.offset != len(data):
        raise RuntimeError(f"hub holds {sent.offset} of {len(data)} bytes after the stream")
    t3 = time.perf_counter()
    done = stub.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                             timeout=timeout)
    t4 = time.perf_counter()
    if phases is not None:
        for name, seconds in (("sign", t1 - t0), ("start", t2 - t1), ("stream", t3 - t2),
                              ("finish", t4 - t3)):
            phases[name] = phases.get(name, 0.0) + seconds
    return str(done.module.module_id)


def fetch_verified(stub: hub_pb2_grpc.ModuleServiceStub, module_id: str,
                   hub_public: bytes, timeout: float = 300) -> bytes:
    """What a downstream client does: stream, check every chunk, the whole sha256 and size,
    the contributor's manifest signature and the hub's countersignature (pinned key)."""
    header = None
    parts: list[bytes] = []
    held = 0
    for message in stub.Download(hub_pb2.DownloadRequest(module_id=module_id),
                                 timeout=timeout):
        if message.HasField("header"):
            header = message.header
            continue
        chunk = message.chunk
        if chunk.offset != held or not chunk_intact(chunk):
            raise RuntimeError(f"module {module_id}: bad chunk at offset {chunk.offset}")
        parts.append(chunk.data)
        held += len(chunk.data)
    if header is None:
        raise RuntimeError(f"module {module_id}: no download header")
    data = b"".join(parts)
    if len(data) != header.size or hashlib.sha256(data).hexdigest() != module_id:
        raise RuntimeError(f"module {module_id}: downloaded bytes do not match their id")
    signed = SignedManifest(header.signed_manifest.manifest, header.signed_manifest.signature)
    manifest = verify_manifest_signature(signed, public_key_from_raw(
        header.contributor_public_key))
    if manifest.module_sha256 != module_id or manifest.module_size != len(data):
        raise RuntimeError(f"module {module_id}: manifest signs other bytes")
    cs = header.countersignature
    verify_countersignature(Countersignature(cs.manifest_sha256, cs.module_sha256, cs.state,
                                             cs.time, cs.hub_key_id, cs.signature),
                            signed, public_key_from_raw(hub_public))
    return data


# -- valid modules -----------------------------------------------------------------------------


def moe18_mp_eform() -> Path:
    """The imported MoE-(18) ``mp_eform`` module folder (imported once into runs/hub/moe18)."""
    folder = ROOT / "runs" / "hub" / "moe18"
    if not (folder / "mp_eform" / "card.json").is_file():
        from moma.modules.moe18 import import_moe18
        from moma.paths import moe18_dir

        import_moe18(moe18_dir(), folder)
    return folder / "mp_eform"


class ModuleFactory:
    """Distinct, valid modules on demand (seeded, so a run can be repeated)."""

    def __init__(self) -> None:
        from moma.backbones.registry import get_backbone
        from moma.modules.store import module_schema

        base = moe18_mp_eform()
        self.cgcnn_base_bytes = (base / "module.safetensors").read_bytes()
        self.cgcnn_base_card = json.loads((base / "card.json").read_text())
        self.cgcnn_base_sha = hashlib.sha256(self.cgcnn_base_bytes).hexdigest()
        cgcnn, chgnet = get_backbone("cgcnn"), get_backbone("chgnet")
        self.cgcnn_adapter_schema = module_schema(cgcnn, "adapter")
        state, self.chgnet_base_sha = chgnet.pretrained_base()
        self.chgnet_state = {k: v.numpy().copy() for k, v in state.items()}
        schema = module_schema(chgnet, "full")
        if {k: (tuple(v.shape), "F32") for k, v in self.chgnet_state.items()} != schema:
            raise RuntimeError("pretrained CHGNet state does not match the hub's full schema")
        self.chgnet_describe = chgnet.describe()

    # cards ------------------------------------------------------------------------------------

    def _card(self, **over: Any) -> dict[str, Any]:
        card = json.loads(json.dumps(self.cgcnn_base_card))
        card.update(module_id="", contributor_key_id=None, dataset_size={"train": 100},
                    split="seed0", metrics={"val_mae": 0.1}, parents=[], participants=[],
                    extra={"benchmark": "bench_hub"},
                    created=datetime.now(UTC).replace(microsecond=0).isoformat())
        card.update(over)
        return card

    def cgcnn_base(self) -> tuple[bytes, dict[str, Any]]:
        card = json.loads(json.dumps(self.cgcnn_base_card))
        card["contributor_key_id"] = None
        return self.cgcnn_base_bytes, card

    def cgcnn_adapter(self, seed: int, task: str = "bench_task") -> tuple[bytes, dict[str, Any]]:
        rng = np.random.default_rng(seed)
        tensors = {name: (rng.standard_normal(shape) * 0.01).astype(np.float32)
                   for name, (shape, _dtype) in self.cgcnn_adapter_schema.items()}
        data = safetensors.numpy.save(dict(sorted(tensors.items())))
        card = self._card(name=f"adapter-{seed}", kind="adapter", task=task,
                          base_sha256=self.cgcnn_base_sha)
        return data, card

    def chgnet_full(self, seed: int, size: int = 0) -> tuple[bytes, dict[str, Any]]:
        """A full CHGNet module (pretrained weights + seeded noise), padded to ``size`` bytes."""
        rng = np.random.default_rng(seed)
        tensors = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-4)
                   for k, v in sorted(self.chgnet_state.items())}
        data = safetensors.numpy.save(tensors)
        if size > len(data):
            pad = size - len(data) - len(',"__metadata__":{"pad":""}')
            for _ in range(4):  # the header is padded to 8 bytes: converge on the exact size
                data = safetensors.numpy.save(tensors, metadata={"pad": "x" * pad})
                pad += size - len(data)
                if len(data) == size:
                    break
        card = self._card(name=f"chgnet-full-{seed}", backbone="chgnet",
                          backbone_version=self.chgnet_describe["version"], kind="full",
                          task="bench_chgnet", property="e_form", unit="eV/atom",
                          base_sha256=self.chgnet_base_sha,
                          featurizer=self.chgnet_describe["featurizer"],
                          hyperparameters={"lr": 1e-4, "epochs": 1})
        return data, card


def largest_valid_size() -> int:
    """CHGNet full tensors plus the largest header the hub accepts (a 64 kB margin)."""
    return 1_649_724 + HEADER_CAP - 64 * 1024


# re-exported for bench_hub.py: the harness it shares with the server tests
__all__ = ["HubProcess", "Lab", "operator_call", "read_line"]
