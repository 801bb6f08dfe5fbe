"""Durability: restarts keep everything, interrupted uploads resume, the audit chain holds."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.conftest import ModulePool
from tests.server.hubtest import (
    MOMA_HUB,
    HubProcess,
    Lab,
    chunks,
    download,
    operator_call,
    signed_manifest,
    upload,
)

PART = 100_000


def stubs(hub: HubProcess) -> tuple[grpc.Channel, hub_pb2_grpc.ModuleServiceStub,
                                     hub_pb2_grpc.OperatorServiceStub]:
    chan = hub.channel()
    return chan, hub_pb2_grpc.ModuleServiceStub(chan), hub_pb2_grpc.OperatorServiceStub(chan)


def enroll(hub: HubProcess, ops: hub_pb2_grpc.OperatorServiceStub, name: str) -> Lab:
    lab = Lab.new(name)
    operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                  hub_pb2.EnrollKeyRequest(lab_name=name, public_key=lab.public_raw))
    return lab


def status(mods: hub_pb2_grpc.ModuleServiceStub, upload_id: str) -> int:
    return mods.GetUploadStatus(hub_pb2.GetUploadStatusRequest(upload_id=upload_id),
                                timeout=10).offset


def stalled_upload(mods: hub_pb2_grpc.ModuleServiceStub, upload_id: str, data: bytes,
                   parts: int) -> tuple[grpc.Future, threading.Event]:
    """An Upload stream that sends ``parts`` chunks and then hangs, like a dying client."""
    hang = threading.Event()

    def requests() -> Iterator[hub_pb2.UploadRequest]:
        for index, request in enumerate(chunks(upload_id, data, size=PART)):
            if index == parts:
                hang.wait(60)
                return
            yield request

    future = mods.Upload.future(requests(), timeout=120)
    deadline = time.monotonic() + 30
    while status(mods, upload_id) < parts * PART:
        assert time.monotonic() < deadline, "the hub never received the first chunks"
        time.sleep(0.05)
    return future, hang


def audit_cli(hub: HubProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOMA_HUB, "audit", "--hub", hub.address, "--insecure",
                           "--operator-key", str(hub.operator_key_path), "--json"],
                          capture_output=True, text=True, timeout=60)


def test_resume_after_client_disconnect(hub: HubProcess, modules: hub_pb2_grpc.ModuleServiceStub,
                                        lab: Lab, pool: ModulePool) -> None:
    data, card = pool.take()
    start = modules.StartUpload(hub_pb2.StartUploadRequest(
        signed_manifest=signed_manifest(lab, data, card, hub.hub_id)), timeout=10)
    future, hang = stalled_upload(modules, start.upload_id, data, parts=2)
    future.cancel()  # the client goes away mid-stream
    hang.set()
    time.sleep(0.2)
    offset = status(modules, start.upload_id)
    assert offset == 2 * PART
    # resuming from any other offset is refused with the right one in the message
    with pytest.raises(grpc.RpcError) as err:
        modules.Upload(chunks(start.upload_id, data, start=0, size=PART), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"resume from offset {offset}" in err.value.details()
    reply = modules.Upload(chunks(start.upload_id, data, start=offset, size=PART), timeout=30)
    assert reply.offset == len(data)
    done = modules.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                                timeout=60)
    assert done.module.module_id == hashlib.sha256(data).hexdigest()
    assert not (hub.store / "tmp" / start.upload_id).exists()


def test_restart_keeps_everything_and_sigkill_mid_upload_resumes(
        tmp_path: Path, pool: ModulePool) -> None:
    hub = HubProcess(tmp_path / "hub").start()
    try:
        chan, mods, ops = stubs(hub)
        lab = enroll(hub, ops, "lab-r")
        gone = enroll(hub, ops, "lab-gone")
        operator_call(ops, hub.operator, hub.hub_id, "RevokeKey",
                      hub_pb2.RevokeKeyRequest(key_id=gone.key_id, reason="test"))
        (a_data, a_card), (b_data, b_card), (c_data, c_card) = (pool.take(), pool.take(),
                                                                 pool.take())
        a = upload(mods, signed_manifest(lab, a_data, a_card, hub.hub_id), a_data).module
        b = upload(mods, signed_manifest(lab, b_data, b_card, hub.hub_id), b_data).module
        operator_call(ops, hub.operator, hub.hub_id, "ApproveModule",
                      hub_pb2.ApproveModuleRequest(module_id=a.module_id))
        start = mods.StartUpload(hub_pb2.StartUploadRequest(
            signed_manifest=signed_manifest(lab, c_data, c_card, hub.hub_id)), timeout=10)
        _, hang = stalled_upload(mods, start.upload_id, c_data, parts=2)
        # leftovers of a crash: a blob without metadata, a temp without a session
        orphan = hashlib.sha256(b"orphan").hexdigest()
        (hub.store / "sha256" / orphan[:2]).mkdir(parents=True, exist_ok=True)
        (hub.store / "sha256" / orphan[:2] / orphan[2:]).write_bytes(b"orphan")
        (hub.store / "tmp" / ("f" * 32)).write_bytes(b"stale")
        audit_before = json.loads(audit_cli(hub).stdout)
        hub.kill()  # SIGKILL in the middle of an upload
        hang.set()
        chan.close()

        hub.start()
        chan, mods, ops = stubs(hub)
        assert not (hub.store / "sha256" / orphan[:2] / orphan[2:]).exists()
        assert (hub.store / "orphaned" / orphan).read_bytes() == b"orphan"
        assert [p.name for p in (hub.store / "tmp").iterdir()] == [start.upload_id]
        every = [hub_pb2.MODULE_STATE_PENDING, hub_pb2.MODULE_STATE_APPROVED]
        listed = {m.module_id: m.state for m in mods.ListModules(
            hub_pb2.ListModulesRequest(states=every), timeout=10).modules}
        assert listed == {a.module_id: hub_pb2.MODULE_STATE_APPROVED,
                          b.module_id: hub_pb2.MODULE_STATE_PENDING}  # no partial module
        assert download(mods, a.module_id)[1] == a_data
        keys = operator_call(ops, hub.operator, hub.hub_id, "ListKeys",
                             hub_pb2.ListKeysRequest(include_revoked=True)).keys
        assert {(k.key_id, k.revoked) for k in keys if k.lab_name.startswith("lab-")} == {
            (lab.key_id, False), (gone.key_id, True)}
        audit_after = json.loads(audit_cli(hub).stdout)
        assert audit_after["verified"] and audit_after["entries"] == audit_before["entries"]

        # the interrupted upload resumes where the hub's file ends
        offset = status(mods, start.upload_id)
        assert offset == 2 * PART
        mods.Upload(chunks(start.upload_id, c_data, start=offset, size=PART), timeout=30)
        done = mods.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                                 timeout=60)
        assert done.module.module_id == hashlib.sha256(c_data).hexdigest()
        chan.close()
    finally:
        hub.stop()


def test_audit_chain_detects_tampering(hub: HubProcess, lab: Lab,
                                       operators: hub_pb2_grpc.OperatorServiceStub) -> None:
    result = audit_cli(hub)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] and report["count"] >= 1
    actions = [e["action"] for e in report["entries"]]
    assert actions[0] == "key.enroll"
    # an attacker with database access rewrites who was enrolled
    db = hub.store / "hub.db"
    with sqlite3.connect(db) as con:
        (original,) = con.execute("SELECT detail_json FROM audit_log WHERE seq = 1").fetchone()
        con.execute("UPDATE audit_log SET detail_json = ? WHERE seq = 1",
                    (json.dumps({"lab_name": "someone-else"}, separators=(",", ":")),))
    try:
        result = audit_cli(hub)
        assert result.returncode == 7
        assert "audit chain BROKEN" in result.stderr and "entry 1" in result.stderr
        assert "edited" in result.stderr
    finally:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE audit_log SET detail_json = ? WHERE seq = 1", (original,))
    assert audit_cli(hub).returncode == 0
