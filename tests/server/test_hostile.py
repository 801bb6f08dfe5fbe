"""Hostile input: each case is refused with a specific status and an actionable message, and
leaves nothing new in the store or the database (one test per case)."""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import grpc
import pytest
import safetensors.torch
import torch

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.conftest import ModulePool
from tests.server.hubtest import (
    HubProcess,
    Lab,
    chunks,
    download,
    operator_call,
    signed_manifest,
    upload,
)

ModuleStub: TypeAlias = hub_pb2_grpc.ModuleServiceStub
OperatorStub: TypeAlias = hub_pb2_grpc.OperatorServiceStub


@pytest.fixture()
def unchanged(hub: HubProcess) -> Iterator[Callable[[], None]]:
    """Call it at the end of a test: the DB row counts and the store files are as before."""
    before = hub.snapshot()

    def check() -> None:
        assert hub.snapshot() == before

    yield check


def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value.details()
    message = err.value.details()
    for word in words:
        assert word in message, message
    return message


def crafted(card: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The card of a real module, re-pointed at other bytes (its own base, like MoE-(18))."""
    sha = hashlib.sha256(data).hexdigest()
    return {**card, "module_id": sha, "base_sha256": sha}


def with_header(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    edit(header)
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + length:]


def test_unknown_key(hub: HubProcess, modules: ModuleStub, pool: ModulePool,
                     unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    stranger = Lab.new("stranger")
    refused(lambda: upload(modules, signed_manifest(stranger, data, card, hub.hub_id), data),
            grpc.StatusCode.UNAUTHENTICATED, "unknown contributor key", stranger.key_id, "enroll")
    unchanged()


def test_revoked_key(hub: HubProcess, modules: ModuleStub, operators: OperatorStub,
                     pool: ModulePool) -> None:
    data, card = pool.spare
    gone = Lab.new("gone")
    operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                  hub_pb2.EnrollKeyRequest(lab_name=gone.name, public_key=gone.public_raw))
    operator_call(operators, hub.operator, hub.hub_id, "RevokeKey",
                  hub_pb2.RevokeKeyRequest(key_id=gone.key_id, reason="compromised"))
    before = hub.snapshot()
    refused(lambda: upload(modules, signed_manifest(gone, data, card, hub.hub_id), data),
            grpc.StatusCode.PERMISSION_DENIED, gone.key_id, "revoked")
    assert hub.snapshot() == before


def test_bad_signature(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                       unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    signed = signed_manifest(lab, data, card, hub.hub_id)
    signed.signature = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.UNAUTHENTICATED,
            "bad signature")
    unchanged()


def test_altered_manifest(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                          unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    signed = signed_manifest(lab, data, card, hub.hub_id)
    signed.manifest = signed.manifest.replace(b'"task":"', b'"task":"x')
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.UNAUTHENTICATED,
            "bad signature", "altered")
    unchanged()


def test_manifest_for_another_hub(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                  pool: ModulePool, unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    refused(lambda: upload(modules, signed_manifest(lab, data, card, "other-hub"), data),
            grpc.StatusCode.UNAUTHENTICATED, "'other-hub'", "sign a new manifest for this hub")
    unchanged()


def test_replayed_nonce(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool
                        ) -> None:
    data, card = pool.spare
    signed = signed_manifest(lab, data, card, hub.hub_id)
    start = modules.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed), timeout=10)
    before = hub.snapshot()
    refused(lambda: modules.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed),
                                        timeout=10),
            grpc.StatusCode.UNAUTHENTICATED, "replayed", "sign a new manifest")
    # a new manifest reusing the nonce is refused as well
    nonce = json.loads(signed.manifest)["nonce"]
    again = signed_manifest(lab, data, card, hub.hub_id, nonce=nonce)
    refused(lambda: modules.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=again),
                                        timeout=10),
            grpc.StatusCode.UNAUTHENTICATED, "replayed")
    assert hub.snapshot() == before
    assert modules.GetUploadStatus(hub_pb2.GetUploadStatusRequest(upload_id=start.upload_id),
                                   timeout=10).offset == 0


@pytest.mark.parametrize("skew", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_issue_time_outside_window(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                   pool: ModulePool, unchanged: Callable[[], None],
                                   skew: timedelta) -> None:
    data, card = pool.spare
    signed = signed_manifest(lab, data, card, hub.hub_id, now=datetime.now(UTC) + skew)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.UNAUTHENTICATED,
            "allowed ±300 s", "check the clock")
    unchanged()


def test_sha256_mismatch(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                         unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    signed = signed_manifest(lab, data, card, hub.hub_id)
    other = data[:-4] + b"\0\0\0\0"  # same size, other bytes
    refused(lambda: upload(modules, signed, other), grpc.StatusCode.INVALID_ARGUMENT,
            "does not match the manifest's", "upload the exact file that was signed")
    unchanged()


def test_size_mismatch(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                       unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    signed = signed_manifest(lab, data, card, hub.hub_id, size=len(data) - 10)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            f"signed manifest says {len(data) - 10}", "exact file")
    unchanged()


def _first_chunk_refused(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                         spoil: Callable[[hub_pb2.UploadRequest], None], code: grpc.StatusCode,
                         *words: str) -> str:
    """Open a session, send its first chunk spoiled by ``spoil``: refused, nothing kept."""
    data, card = pool.spare
    start = modules.StartUpload(hub_pb2.StartUploadRequest(
        signed_manifest=signed_manifest(lab, data, card, hub.hub_id)), timeout=10)
    before = hub.snapshot()
    bad = next(chunks(start.upload_id, data, size=100_000))
    spoil(bad)
    refused(lambda: modules.Upload(iter([bad]), timeout=10), code, *words)
    status = modules.GetUploadStatus(hub_pb2.GetUploadStatusRequest(upload_id=start.upload_id),
                                     timeout=10)
    assert status.offset == 0  # the chunk was dropped
    assert hub.snapshot() == before
    return str(start.upload_id)


def test_chunk_altered_in_transit(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                  pool: ModulePool) -> None:
    def alter(request: hub_pb2.UploadRequest) -> None:
        request.chunk.data = b"X" + request.chunk.data[1:]

    upload_id = _first_chunk_refused(hub, modules, lab, pool, alter, grpc.StatusCode.DATA_LOSS,
                                     "does not match its CRC-32", "resend it from offset 0")
    refused(lambda: modules.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=upload_id),
                                         timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION, "incomplete", "offset 0")


def test_chunk_without_checksum(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                pool: ModulePool) -> None:
    _first_chunk_refused(hub, modules, lab, pool, lambda r: r.chunk.ClearField("crc32"),
                         grpc.StatusCode.INVALID_ARGUMENT, "has no crc32", "make_chunk")


def test_upload_above_size_limit(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                 pool: ModulePool, unchanged: Callable[[], None]) -> None:
    _, card = pool.spare
    size = hub.max_module_bytes + 1
    signed = signed_manifest(lab, b"", card, hub.hub_id, size=size, sha256="ab" * 32)
    refused(lambda: modules.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed),
                                        timeout=10),
            grpc.StatusCode.RESOURCE_EXHAUSTED, f"{size} bytes",
            f"maximum of {hub.max_module_bytes}")
    unchanged()


def test_pickle_payload(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                        unchanged: Callable[[], None]) -> None:
    _, card = pool.spare
    data = pickle.dumps({"conv.weight": list(range(1000))}, protocol=4)
    signed = signed_manifest(lab, data, crafted(card, data), hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            "pickle", "never unpickles")
    unchanged()


def test_lying_header(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                      unchanged: Callable[[], None]) -> None:
    real, card = pool.spare

    def lie(header: dict[str, Any]) -> None:
        name = next(k for k in header if k != "__metadata__")
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [begin, end + 4096]  # claims bytes that are not there

    data = with_header(real, lie)
    signed = signed_manifest(lab, data, crafted(card, data), hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            f"module {hashlib.sha256(data).hexdigest()}")
    unchanged()


def test_schema_mismatch(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                         unchanged: Callable[[], None]) -> None:
    real, card = pool.spare
    state = safetensors.torch.load(real)
    name = sorted(k for k, v in state.items() if v.ndim == 2)[0]
    state[name] = torch.zeros(state[name].shape[0], state[name].shape[1] + 1)
    data = safetensors.torch.save(state)
    signed = signed_manifest(lab, data, crafted(card, data), hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            "does not match the cgcnn full-module schema", name)
    unchanged()


def test_adapter_declared_for_full_weights(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                           pool: ModulePool, unchanged: Callable[[], None]
                                           ) -> None:
    real, card = pool.spare
    data = real[:-4] + b"\0\0\0\0"
    signed = signed_manifest(lab, data, {**crafted(card, data), "kind": "adapter"}, hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            "cgcnn adapter-module schema", "missing tensor")
    unchanged()


def test_non_finite_weights(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                            unchanged: Callable[[], None]) -> None:
    real, card = pool.spare
    state = safetensors.torch.load(real)
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[name].view(-1)[0] = float("nan")
    data = safetensors.torch.save(state)
    signed = signed_manifest(lab, data, crafted(card, data), hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            "non-finite", name)
    unchanged()


@pytest.mark.parametrize("value", [1e30, -2e4])
def test_weights_above_the_backbone_bound(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                          pool: ModulePool, unchanged: Callable[[], None],
                                          value: float) -> None:
    real, card = pool.spare
    state = safetensors.torch.load(real)
    name = "fc_out.weight"
    state[name].view(-1)[-1] = value
    data = safetensors.torch.save(state)
    signed = signed_manifest(lab, data, crafted(card, data), hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            "magnitude above 10000", name, f"largest {abs(value):.3g}")
    unchanged()


def test_module_of_a_revoked_key_cannot_be_approved(hub: HubProcess, modules: ModuleStub,
                                                    operators: OperatorStub,
                                                    pool: ModulePool) -> None:
    real, card = pool.spare
    state = safetensors.torch.load(real)
    state["fc_out.bias"].add_(0.125)  # a distinct, valid module
    data = safetensors.torch.save(state)
    gone = Lab.new("leaves-after-upload")
    operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                  hub_pb2.EnrollKeyRequest(lab_name=gone.name, public_key=gone.public_raw))
    stored = upload(modules, signed_manifest(gone, data, crafted(card, data), hub.hub_id), data)
    operator_call(operators, hub.operator, hub.hub_id, "RevokeKey",
                  hub_pb2.RevokeKeyRequest(key_id=gone.key_id, reason="left"))
    refused(lambda: operator_call(operators, hub.operator, hub.hub_id, "ApproveModule",
                                  hub_pb2.ApproveModuleRequest(
                                      module_id=stored.module.module_id)),
            grpc.StatusCode.FAILED_PRECONDITION, "was revoked", "reject the module instead")
    operator_call(operators, hub.operator, hub.hub_id, "RejectModule",
                  hub_pb2.RejectModuleRequest(module_id=stored.module.module_id, reason="key"))


def test_unknown_base(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                      unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    base = secrets.token_hex(32)
    signed = signed_manifest(lab, data, {**card, "base_sha256": base}, hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            f"declares base {base}", "does not know", "contribute the base first")
    unchanged()


def test_malformed_card(hub: HubProcess, modules: ModuleStub, lab: Lab, pool: ModulePool,
                        unchanged: Callable[[], None]) -> None:
    data, card = pool.spare
    signed = signed_manifest(lab, data, {**card, "backbone": "resnet"}, hub.hub_id)
    refused(lambda: upload(modules, signed, data), grpc.StatusCode.INVALID_ARGUMENT,
            "'backbone'", "resnet")
    unchanged()


def test_download_not_approved(hub: HubProcess, modules: ModuleStub, lab: Lab,
                               pool: ModulePool) -> None:
    data, card = pool.take()
    module = upload(modules, signed_manifest(lab, data, card, hub.hub_id), data).module
    refused(lambda: download(modules, module.module_id), grpc.StatusCode.FAILED_PRECONDITION,
            "pending, not approved")
    refused(lambda: download(modules, "0" * 64), grpc.StatusCode.NOT_FOUND, "no module")


def test_operator_rpc_without_auth(hub: HubProcess, operators: OperatorStub,
                                   unchanged: Callable[[], None]) -> None:
    intruder = Lab.new("intruder")
    request = hub_pb2.EnrollKeyRequest(lab_name=intruder.name, public_key=intruder.public_raw)
    refused(lambda: operators.EnrollKey(request, timeout=10), grpc.StatusCode.UNAUTHENTICATED,
            "needs an OperatorAuth")
    refused(lambda: operator_call(operators, intruder.private, hub.hub_id, "EnrollKey", request),
            grpc.StatusCode.UNAUTHENTICATED, "unknown operator key")
    unchanged()


def test_operator_rpc_with_lab_key(hub: HubProcess, operators: OperatorStub, lab: Lab,
                                   unchanged: Callable[[], None]) -> None:
    request = hub_pb2.EnrollKeyRequest(lab_name="mine", public_key=Lab.new("x").public_raw)
    refused(lambda: operator_call(operators, lab.private, hub.hub_id, "EnrollKey", request),
            grpc.StatusCode.PERMISSION_DENIED, "not an operator key")
    unchanged()


def test_operator_request_tampered_replayed_or_stale(hub: HubProcess, operators: OperatorStub,
                                                     unchanged: Callable[[], None]) -> None:
    newcomer = Lab.new("newcomer")
    request = hub_pb2.EnrollKeyRequest(lab_name="newcomer", public_key=newcomer.public_raw)
    refused(lambda: operator_call(operators, hub.operator, hub.hub_id, "EnrollKey", request,
                                  when=int(datetime.now(UTC).timestamp()) - 3600),
            grpc.StatusCode.UNAUTHENTICATED, "from the hub's clock")
    refused(lambda: operator_call(operators, hub.operator, "other-hub", "EnrollKey", request),
            grpc.StatusCode.UNAUTHENTICATED, "bad operator signature")
    # signed for ListKeys, sent as EnrollKey; and a body changed after signing
    listing = hub_pb2.ListKeysRequest()
    operator_call(operators, hub.operator, hub.hub_id, "ListKeys", listing)
    forged = hub_pb2.EnrollKeyRequest(lab_name="newcomer", public_key=newcomer.public_raw)
    forged.auth.CopyFrom(listing.auth)
    refused(lambda: operators.EnrollKey(forged, timeout=10), grpc.StatusCode.UNAUTHENTICATED,
            "bad operator signature")
    # replay of a valid request's auth (ListKeys made above)
    refused(lambda: operators.ListKeys(listing, timeout=10), grpc.StatusCode.UNAUTHENTICATED,
            "replayed")
    unchanged()
