"""Stateless replicas: 3 hub processes on one PostgreSQL and one S3 bucket, nginx in front.

Everything here runs against real servers: PostgreSQL 15, SeaweedFS's S3 gateway, nginx's
``grpc_pass`` and real ``moma-hub serve`` processes that are SIGKILLed mid-upload.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from moma.modules.store import CARD_FILE, MODULE_FILE
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.keys import public_key_from_raw
from moma_client.hub.client import HubClient
from moma_client.hub.connection import Transport
from moma_client.hub.upload import _session_path, contribute
from moma_server.store.audit import AuditRecord, verify_chain
from tests.server import postgres
from tests.server.cluster import Cluster
from tests.server.conftest import ModulePool
from tests.server.hubtest import Lab, chunks, download, operator_call, signed_manifest, upload
from tests.server.seaweed import Seaweed

PART = 100_000


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[None]:
    with postgres.cluster():
        yield


@pytest.fixture()
def cluster(pg_cluster: None, seaweed: Seaweed, tmp_path: Path) -> Iterator[Cluster]:
    with postgres.database() as url, Cluster(tmp_path / "cluster", url, seaweed) as running:
        yield running


def stubs(address: str) -> tuple[grpc.Channel, hub_pb2_grpc.ModuleServiceStub,
                                  hub_pb2_grpc.OperatorServiceStub]:
    chan = grpc.insecure_channel(address)
    return chan, hub_pb2_grpc.ModuleServiceStub(chan), hub_pb2_grpc.OperatorServiceStub(chan)


def status(mods: hub_pb2_grpc.ModuleServiceStub, upload_id: str) -> int:
    return mods.GetUploadStatus(hub_pb2.GetUploadStatusRequest(upload_id=upload_id),
                                timeout=30).offset


def hanging_stream(mods: hub_pb2_grpc.ModuleServiceStub, upload_id: str, data: bytes,
                   start: int) -> threading.Event:
    """An Upload stream that sends two chunks from ``start`` and then hangs."""
    hang = threading.Event()

    def requests() -> Iterator[hub_pb2.UploadRequest]:
        for index, request in enumerate(chunks(upload_id, data, start=start, size=PART)):
            if index == 2:
                hang.wait(60)
                return
            yield request

    mods.Upload.future(requests(), timeout=120)
    return hang


def audit_verified(ops: hub_pb2_grpc.OperatorServiceStub, cluster: Cluster) -> list[str]:
    entries = operator_call(ops, cluster.operator, cluster.hub_id, "AuditLog",
                            hub_pb2.AuditLogRequest(limit=1000)).entries
    records = [AuditRecord(e.seq, e.time, e.actor_key_id, e.action, e.subject, e.detail_json,
                           e.prev_hash, e.entry_hash) for e in entries]
    assert verify_chain(records) == len(records)  # one chain: no fork, no gap
    return [e.action for e in entries]


def test_replicas_behind_nginx_survive_a_sigkill_mid_upload(
        cluster: Cluster, pool: ModulePool, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.nginx is not None
    chan, mods, ops = stubs(cluster.nginx.address)
    lab = Lab.new("lab-scale")
    operator_call(ops, cluster.operator, cluster.hub_id, "EnrollKey",
                  hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
    # 1. through nginx, the calls of one upload land on different replicas
    a_data, a_card = pool.modules[0]
    a = upload(mods, signed_manifest(lab, a_data, a_card, cluster.hub_id), a_data,
               start_timeout=600).module
    time.sleep(0.2)  # nginx writes its access log line as each call ends
    served = {addr for path, addr in cluster.nginx.upstreams() if "Upload" in path}
    assert len(served) >= 2, served  # StartUpload, Upload, FinishUpload: not one replica

    # 2. an upload started on replica 0 gets a first part recorded, then replica 0 dies
    #    in the middle of the next stream
    b_data, b_card = pool.modules[1]
    r0 = cluster.replicas[0]
    chan0, mods0, _ = stubs(r0.address)
    start = mods0.StartUpload(hub_pb2.StartUploadRequest(
        signed_manifest=signed_manifest(lab, b_data, b_card, cluster.hub_id)), timeout=600)
    first = list(chunks(start.upload_id, b_data, size=PART))[:2]
    assert mods0.Upload(iter(first), timeout=60).offset == 2 * PART
    hang = hanging_stream(mods0, start.upload_id, b_data, 2 * PART)
    time.sleep(0.5)
    r0.kill()
    hang.set()
    chan0.close()

    # 3. the lab's client, given every replica, resumes the session on a live one
    module_dir = tmp_path / "module_b"
    module_dir.mkdir()
    (module_dir / MODULE_FILE).write_bytes(b_data)
    (module_dir / CARD_FILE).write_text(json.dumps(b_card))
    monkeypatch.setenv("MOMA_CACHE", str(tmp_path / "cache"))
    module_id = hashlib.sha256(b_data).hexdigest()
    hub_key = public_key_from_raw(
        mods.GetHubInfo(hub_pb2.GetHubInfoRequest(), timeout=30).hub_public_key)
    session_file = _session_path(cluster.hub_id, module_id)
    session_file.parent.mkdir(parents=True, exist_ok=True)
    session_file.write_text(json.dumps({"hub_address": cluster.addresses,
                                        "hub_id": cluster.hub_id, "module_id": module_id,
                                        "upload_id": start.upload_id}))
    with HubClient(Transport(cluster.addresses, insecure=True), hub_key=hub_key) as client:
        done = contribute(client, lab.private, module_dir)
    # the part replica 0 recorded was kept (and any chunk of the dying stream it recorded)
    assert 2 * PART <= done.resumed_from < len(b_data)
    assert done.module.module_id == module_id

    # 4. a replica restarting (start-up reconciliation) leaves another replica's live
    #    upload alone
    c_data, c_card = pool.modules[2]
    r1 = cluster.replicas[1]
    chan1, mods1, _ = stubs(r1.address)
    live = mods1.StartUpload(hub_pb2.StartUploadRequest(
        signed_manifest=signed_manifest(lab, c_data, c_card, cluster.hub_id)), timeout=600)
    mods1.Upload(iter(list(chunks(live.upload_id, c_data, size=PART))[:1]), timeout=60)
    r0.start(timeout=240)
    assert "start-up recovery" in (r0.root / "hub.log").read_text()
    _, mods0, _ = stubs(r0.address)
    assert status(mods0, live.upload_id) == PART
    mods0.Upload(chunks(live.upload_id, c_data, start=PART, size=PART), timeout=60)
    c = mods0.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=live.upload_id),
                           timeout=120).module
    chan1.close()

    # 5. approvals on different replicas at once keep one audit chain
    ids = [a.module_id, module_id, c.module_id]
    errors: list[BaseException] = []

    def approve(index: int) -> None:
        try:
            _, _, ops_i = stubs(cluster.replicas[index].address)
            operator_call(ops_i, cluster.operator, cluster.hub_id, "ApproveModule",
                          hub_pb2.ApproveModuleRequest(module_id=ids[index]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    actions = audit_verified(ops, cluster)
    assert actions.count("module.approve") == 3 and actions.count("module.submit") == 3

    # 6. every module downloads intact through nginx, whichever replica serves it
    for module_id_, data in zip(ids, (a_data, b_data, c_data), strict=True):
        assert download(mods, module_id_)[1] == data
    # and nothing but the three blobs is left in the bucket
    keys = [o["Key"] for o in cluster.weed.client().list_objects_v2(
        Bucket=cluster.bucket).get("Contents", [])]
    assert sorted(keys) == sorted(f"hub/sha256/{m[:2]}/{m[2:]}" for m in ids)
    chan.close()
