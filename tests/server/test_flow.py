"""The whole contribution path against a real hub: upload, curate, list, download, verify."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import pytest
import safetensors.torch
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from moma.backbones.registry import get_backbone
from moma.modules.store import module_schema
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.countersignature import Countersignature, verify_countersignature
from moma.trust.keys import public_key_from_raw
from moma.trust.manifest import SignedManifest, verify_manifest_signature
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


def to_cs(cs: hub_pb2.Countersignature) -> Countersignature:
    return Countersignature(cs.manifest_sha256, cs.module_sha256, cs.state, cs.time,
                            cs.hub_key_id, cs.signature)


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "moma.hub.v1.ModuleService", "moma.hub.v1.OperatorService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"moma.hub.v1.ModuleService", "moma.hub.v1.OperatorService",
            "grpc.health.v1.Health"} <= names


def test_hub_info(hub: HubProcess, modules: ModuleStub) -> None:
    info = modules.GetHubInfo(hub_pb2.GetHubInfoRequest(), timeout=10)
    assert info.hub_id == hub.hub_id
    assert public_key_from_raw(info.hub_public_key) == hub.hub_key.public_key()
    assert info.max_module_size == hub.max_module_bytes
    assert info.chunk_size == 1024 * 1024
    assert info.manifest_tolerance_s == 300


def test_upload_approve_list_download(hub: HubProcess, modules: ModuleStub,
                                      operators: OperatorStub, lab: Lab, pool: ModulePool) -> None:
    data, card = pool.take()
    sha = hashlib.sha256(data).hexdigest()
    signed = signed_manifest(lab, data, card, hub.hub_id)
    t0 = time.perf_counter()
    # chunks smaller than the module, so the module spans several messages
    done = upload(modules, signed, data, chunk_size=100_000)
    upload_s = time.perf_counter() - t0
    assert done.module.module_id == sha
    assert done.module.state == hub_pb2.MODULE_STATE_PENDING
    assert done.module.lab_name == lab.name and done.module.size == len(data)
    assert (hub.store / "sha256" / sha[:2] / sha[2:]).read_bytes() == data

    # pending: not listed by default, not downloadable, listed when asked for
    listed = modules.ListModules(hub_pb2.ListModulesRequest(), timeout=10).modules
    assert sha not in [m.module_id for m in listed]
    with pytest.raises(grpc.RpcError) as err:
        download(modules, sha)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pending, not approved" in err.value.details()
    pending = modules.ListModules(hub_pb2.ListModulesRequest(
        states=[hub_pb2.MODULE_STATE_PENDING]), timeout=10).modules
    assert sha in [m.module_id for m in pending]

    approved = operator_call(operators, hub.operator, hub.hub_id, "ApproveModule",
                             hub_pb2.ApproveModuleRequest(module_id=sha, note="looks fine"))
    assert approved.module.state == hub_pb2.MODULE_STATE_APPROVED

    listed = modules.ListModules(hub_pb2.ListModulesRequest(backbone="cgcnn", kind="full",
                                                            task=card["task"]), timeout=10)
    assert [m.module_id for m in listed.modules] == [sha]
    assert listed.modules[0].base_sha256 == sha  # MoE-(18) modules are their own base

    t0 = time.perf_counter()
    header, got = download(modules, sha)
    download_s = time.perf_counter() - t0
    assert got == data and header.size == len(data) and header.offset == 0
    # the client's checks: contributor signature, pinned hub key countersignature, sha256
    manifest = verify_manifest_signature(
        SignedManifest(header.signed_manifest.manifest, header.signed_manifest.signature),
        public_key_from_raw(header.contributor_public_key))
    assert manifest.module_sha256 == hashlib.sha256(got).hexdigest()
    assert manifest.card == card
    verify_countersignature(to_cs(header.countersignature),
                            SignedManifest(signed.manifest, signed.signature),
                            hub.hub_key.public_key())

    # resume a download from an offset
    header, tail = download(modules, sha, offset=len(data) - 1000)
    assert header.offset == len(data) - 1000 and tail == data[-1000:]
    header, none = download(modules, sha, offset=len(data))
    assert none == b""
    with pytest.raises(grpc.RpcError) as err:
        download(modules, sha, offset=len(data) + 1)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE

    card_reply = modules.GetCard(hub_pb2.GetCardRequest(module_id=sha), timeout=10)
    assert json.loads(card_reply.card_json) == card
    assert card_reply.countersignature.state == "approved"
    print(f"upload {len(data)} B in {upload_s:.3f} s, download in {download_s:.3f} s")


def test_reject_and_revoke(hub: HubProcess, modules: ModuleStub, operators: OperatorStub,
                           lab: Lab, pool: ModulePool) -> None:
    data_a, card_a = pool.take()
    data_b, card_b = pool.take()
    a = upload(modules, signed_manifest(lab, data_a, card_a, hub.hub_id), data_a).module
    b = upload(modules, signed_manifest(lab, data_b, card_b, hub.hub_id), data_b).module
    rejected = operator_call(operators, hub.operator, hub.hub_id, "RejectModule",
                             hub_pb2.RejectModuleRequest(module_id=a.module_id, reason="dup"))
    assert rejected.module.state == hub_pb2.MODULE_STATE_REJECTED
    with pytest.raises(grpc.RpcError) as err:  # rejected is final
        operator_call(operators, hub.operator, hub.hub_id, "ApproveModule",
                      hub_pb2.ApproveModuleRequest(module_id=a.module_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "rejected" in err.value.details()

    operator_call(operators, hub.operator, hub.hub_id, "ApproveModule",
                  hub_pb2.ApproveModuleRequest(module_id=b.module_id))
    revoked = operator_call(operators, hub.operator, hub.hub_id, "RevokeModule",
                            hub_pb2.RevokeModuleRequest(module_id=b.module_id, reason="bug"))
    assert revoked.module.state == hub_pb2.MODULE_STATE_REVOKED
    with pytest.raises(grpc.RpcError) as err:
        download(modules, b.module_id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = modules.ListModules(hub_pb2.ListModulesRequest(), timeout=10).modules
    assert b.module_id not in [m.module_id for m in listed]
    # the signed revocation notice verifies as "revoked", and not as an approval
    card = modules.GetCard(hub_pb2.GetCardRequest(module_id=b.module_id), timeout=10)
    sm = SignedManifest(card.signed_manifest.manifest, card.signed_manifest.signature)
    verify_countersignature(to_cs(card.countersignature), sm, hub.hub_key.public_key(),
                            accepted_states=("revoked",))

    entries = operator_call(operators, hub.operator, hub.hub_id, "AuditLog",
                            hub_pb2.AuditLogRequest()).entries
    actions = [(e.action, e.subject) for e in entries]
    assert ("module.reject", a.module_id) in actions
    assert ("module.revoke", b.module_id) in actions


def test_list_paging_and_filters(hub: HubProcess, modules: ModuleStub, operators: OperatorStub,
                                 lab: Lab, pool: ModulePool) -> None:
    ids = []
    for _ in range(3):
        data, card = pool.take()
        ids.append(upload(modules, signed_manifest(lab, data, card, hub.hub_id),
                          data).module.module_id)
    every = [hub_pb2.MODULE_STATE_PENDING, hub_pb2.MODULE_STATE_APPROVED,
             hub_pb2.MODULE_STATE_REJECTED, hub_pb2.MODULE_STATE_REVOKED]
    seen: list[str] = []
    request = hub_pb2.ListModulesRequest(states=every, page_size=2)
    while True:
        page = modules.ListModules(request, timeout=10)
        assert len(page.modules) <= 2
        seen += [m.module_id for m in page.modules]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert len(seen) == len(set(seen)) and set(ids) <= set(seen)
    assert not modules.ListModules(hub_pb2.ListModulesRequest(states=every, backbone="chgnet"),
                                   timeout=10).modules
    with pytest.raises(grpc.RpcError) as err:
        modules.ListModules(hub_pb2.ListModulesRequest(page_token="nonsense"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_key_management(hub: HubProcess, operators: OperatorStub, lab: Lab) -> None:
    other = Lab.new("lab-b")
    enrolled = operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                             hub_pb2.EnrollKeyRequest(lab_name=other.name,
                                                      public_key=other.public_raw)).key
    assert enrolled.key_id == other.key_id and enrolled.role == hub_pb2.KEY_ROLE_CONTRIBUTOR
    with pytest.raises(grpc.RpcError) as err:
        operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name="again", public_key=other.public_raw))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as err:
        operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name="short", public_key=b"123"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "32 bytes" in err.value.details()
    operator_call(operators, hub.operator, hub.hub_id, "RevokeKey",
                  hub_pb2.RevokeKeyRequest(key_id=other.key_id, reason="left"))
    keys = operator_call(operators, hub.operator, hub.hub_id, "ListKeys",
                         hub_pb2.ListKeysRequest()).keys
    assert other.key_id not in [k.key_id for k in keys] and lab.key_id in [k.key_id for k in keys]
    keys = operator_call(operators, hub.operator, hub.hub_id, "ListKeys",
                         hub_pb2.ListKeysRequest(include_revoked=True)).keys
    revoked = next(k for k in keys if k.key_id == other.key_id)
    assert revoked.revoked and revoked.revoke_reason == "left"
    assert any(k.role == hub_pb2.KEY_ROLE_OPERATOR for k in keys)


def test_module_larger_than_grpc_message_limit_streams(hub: HubProcess, modules: ModuleStub,
                                                       lab: Lab, pool: ModulePool) -> None:
    """6 MiB (over gRPC's 4 MiB message limit) moves in chunks; only the schema refuses it."""
    _, card = pool.spare
    big = safetensors.torch.save({"w": torch.ones(6 * 1024 * 1024 // 4)})
    sha = hashlib.sha256(big).hexdigest()
    signed = signed_manifest(lab, big, {**card, "module_id": sha, "base_sha256": sha},
                             hub.hub_id)
    start = modules.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed), timeout=10)
    reply = modules.Upload(chunks(start.upload_id, big), timeout=60)
    assert reply.offset == len(big) > 4 * 1024 * 1024
    with pytest.raises(grpc.RpcError) as err:
        modules.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not match the cgcnn full-module schema" in err.value.details()
    assert not (hub.store / "tmp" / start.upload_id).exists()


@pytest.mark.slow
def test_concurrent_uploads_and_downloads(tmp_path: Path, pool: ModulePool) -> None:
    """Twelve labs upload at once, then download at once: nothing lost, nothing corrupt."""
    own = HubProcess(tmp_path / "hub").start()
    try:
        with own.channel() as chan:
            mods, ops = ModuleStub(chan), OperatorStub(chan)
            labs = [Lab.new(f"lab-{i}") for i in range(12)]
            for lab in labs:
                operator_call(ops, own.operator, own.hub_id, "EnrollKey",
                              hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                       public_key=lab.public_raw))
            work = list(zip(labs, pool.modules[:12], strict=True))

            def contribute(item: tuple[Lab, tuple[bytes, dict[str, Any]]]) -> str:
                lab, (data, card) = item
                signed = signed_manifest(lab, data, card, own.hub_id)
                return str(upload(mods, signed, data, chunk_size=65_536).module.module_id)

            with ThreadPoolExecutor(12) as executor:
                ids = list(executor.map(contribute, work))
            for module_id in ids:
                operator_call(ops, own.operator, own.hub_id, "ApproveModule",
                              hub_pb2.ApproveModuleRequest(module_id=module_id))
            with ThreadPoolExecutor(12) as executor:
                got = list(executor.map(lambda m: download(mods, m)[1], ids))
            assert [hashlib.sha256(g).hexdigest() for g in got] == ids
            assert ids == [hashlib.sha256(d).hexdigest() for d, _ in pool.modules[:12]]
            entries = operator_call(ops, own.operator, own.hub_id, "AuditLog",
                                    hub_pb2.AuditLogRequest(limit=1000)).entries
            assert len(entries) == 36 and [e.seq for e in entries] == list(range(1, 37))
    finally:
        own.stop()


def test_known_bases_are_accepted(hub: HubProcess, modules: ModuleStub, lab: Lab,
                                  pool: ModulePool) -> None:
    """A base is known when the hub stores it, or when it is a backbone's pretrained base."""
    base_data, base_card = pool.take()
    base = upload(modules, signed_manifest(lab, base_data, base_card, hub.hub_id),
                  base_data).module.module_id
    child_data, child_card = pool.take()
    child = upload(modules, signed_manifest(lab, child_data, {**child_card, "base_sha256": base},
                                            hub.hub_id), child_data).module
    assert child.base_sha256 == base

    chgnet = get_backbone("chgnet")
    pretrained = chgnet.pretrained_base()
    assert pretrained is not None
    schema = module_schema(chgnet, "adapter")
    adapter = safetensors.torch.save({name: torch.zeros(shape) for name, (shape, _)
                                      in schema.items()})
    sha = hashlib.sha256(adapter).hexdigest()
    card = {**child_card, "backbone": "chgnet", "backbone_version": chgnet.version,
            "kind": "adapter", "base_sha256": pretrained[1], "module_id": sha,
            "name": "chgnet-adapter", "task": "chgnet-adapter-test"}
    module = upload(modules, signed_manifest(lab, adapter, card, hub.hub_id), adapter).module
    assert (module.backbone, module.kind, module.base_sha256) == ("chgnet", "adapter",
                                                                  pretrained[1])
    # a base of another backbone is refused by name
    wrong = {**card, "base_sha256": base, "module_id": ""}
    with pytest.raises(grpc.RpcError) as err:
        modules.StartUpload(hub_pb2.StartUploadRequest(
            signed_manifest=signed_manifest(lab, adapter[:-4] + b"\0\0\0\1", wrong,
                                            hub.hub_id, sha256="cd" * 32)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "which is a cgcnn module" in err.value.details()
