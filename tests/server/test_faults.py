"""Faults of a scaled-out hub: object-store outage, SIGKILL during FinishUpload, 128 clients.

Real PostgreSQL, a real SeaweedFS (its own instance where the test stops it), real replicas.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server import postgres
from tests.server.cluster import Cluster
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
from tests.server.seaweed import Seaweed


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[None]:
    with postgres.cluster():
        yield


def _stubs(address: str) -> tuple[grpc.Channel, hub_pb2_grpc.ModuleServiceStub,
                                   hub_pb2_grpc.OperatorServiceStub]:
    chan = grpc.insecure_channel(address)
    return chan, hub_pb2_grpc.ModuleServiceStub(chan), hub_pb2_grpc.OperatorServiceStub(chan)


def _bucket_keys(weed: Seaweed, bucket: str) -> list[str]:
    pages = weed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _unavailable(func: Any) -> str:
    with pytest.raises(grpc.RpcError) as err:
        func()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    return str(err.value.details())


@pytest.mark.slow
def test_object_store_outage_is_unavailable_and_heals(pg_cluster: None, tmp_path: Path,
                                                      pool: ModulePool) -> None:
    weed = Seaweed(tmp_path / "weed").start()  # its own: this test stops it
    try:
        bucket = weed.bucket()
        with postgres.database() as url:
            hub = HubProcess(tmp_path / "hub", db=url, store_url=f"s3://{bucket}/hub",
                             env=weed.env).start()
            try:
                chan, mods, ops = _stubs(hub.address)
                lab = Lab.new("lab-outage")
                operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                              hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                       public_key=lab.public_raw))
                (a_data, a_card), (b_data, b_card) = pool.modules[3], pool.modules[4]
                a = upload(mods, signed_manifest(lab, a_data, a_card, hub.hub_id), a_data,
                           start_timeout=600).module
                operator_call(ops, hub.operator, hub.hub_id, "ApproveModule",
                              hub_pb2.ApproveModuleRequest(module_id=a.module_id))
                start = mods.StartUpload(hub_pb2.StartUploadRequest(
                    signed_manifest=signed_manifest(lab, b_data, b_card, hub.hub_id)), timeout=600)

                weed.stop()  # the object store goes away
                message = _unavailable(lambda: download(mods, a.module_id))
                assert "object store" in message and "retry" in message
                _unavailable(lambda: mods.Upload(chunks(start.upload_id, b_data), timeout=120))
                # the metadata still answers, and nothing was recorded for the failed stream
                assert mods.GetUploadStatus(hub_pb2.GetUploadStatusRequest(
                    upload_id=start.upload_id), timeout=30).offset == 0
                listed = mods.ListModules(hub_pb2.ListModulesRequest(), timeout=30).modules
                assert [m.module_id for m in listed] == [a.module_id]
                time.sleep(3)

                weed.start()  # back on the same ports and data; the hub is not restarted
                deadline = time.monotonic() + 120
                while True:  # the store may answer 5xx for a few seconds while it settles
                    try:
                        assert download(mods, a.module_id)[1] == a_data
                        break
                    except grpc.RpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                        assert time.monotonic() < deadline, "the hub never served again"
                        time.sleep(1)
                assert mods.Upload(chunks(start.upload_id, b_data),
                                   timeout=120).offset == len(b_data)
                b = mods.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                                      timeout=120).module
                assert b.module_id == hashlib.sha256(b_data).hexdigest()
                assert _bucket_keys(weed, bucket) == sorted(
                    f"hub/sha256/{m[:2]}/{m[2:]}" for m in (a.module_id, b.module_id))
                chan.close()
            finally:
                hub.stop()
    finally:
        weed.stop()


@pytest.mark.slow
def test_sigkill_during_finish_upload_never_leaves_a_partial_module(
        pg_cluster: None, seaweed: Seaweed, tmp_path: Path, pool: ModulePool) -> None:
    with postgres.database() as url, Cluster(tmp_path / "c", url, seaweed, size=2) as cluster:
        survivor = cluster.replicas[1]
        chan, mods, ops = _stubs(survivor.address)
        lab = Lab.new("lab-finish-kill")
        operator_call(ops, cluster.operator, cluster.hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
        stored: dict[str, bytes] = {}
        for attempt, delay in enumerate((0.0, 0.05, 0.15)):
            data, card = pool.modules[5 + attempt]
            victim = cluster.replicas[0]
            _, vmods, _ = _stubs(victim.address)
            start = vmods.StartUpload(hub_pb2.StartUploadRequest(
                signed_manifest=signed_manifest(lab, data, card, cluster.hub_id)), timeout=600)
            vmods.Upload(chunks(start.upload_id, data), timeout=120)
            vmods.FinishUpload.future(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                                      timeout=120)
            time.sleep(delay)
            victim.kill()  # SIGKILL somewhere in FinishUpload
            module_id = hashlib.sha256(data).hexdigest()
            try:  # finish on the survivor: the session is either still there or committed
                done = mods.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                                         timeout=120).module
                assert done.module_id == module_id
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc.details()
            every = [hub_pb2.MODULE_STATE_PENDING]
            listed = {m.module_id: m.size for m in mods.ListModules(
                hub_pb2.ListModulesRequest(states=every), timeout=30).modules}
            assert listed.get(module_id) == len(data)  # committed exactly once, complete
            stored[module_id] = data
            victim.start(timeout=240)
        for module_id, data in stored.items():
            operator_call(ops, cluster.operator, cluster.hub_id, "ApproveModule",
                          hub_pb2.ApproveModuleRequest(module_id=module_id))
            assert download(mods, module_id)[1] == data
        blobs = [k for k in _bucket_keys(seaweed, cluster.bucket) if "/sha256/" in k]
        assert sorted(blobs) == sorted(f"hub/sha256/{m[:2]}/{m[2:]}" for m in stored)
        chan.close()


class _ForwardedFor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                    grpc.StreamUnaryClientInterceptor):
    """Every call says whom it is for, as a front proxy would (the replicas trust loopback)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), ("x-forwarded-for", self.address)]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _Phases:
    """The slowest call of each phase, for the report (a failure says where time went)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slowest: dict[str, float] = {}

    def timed(self, phase: str, func: Any) -> Any:
        began = time.monotonic()
        try:
            return func()
        finally:
            took = time.monotonic() - began
            with self.lock:
                self.slowest[phase] = max(self.slowest.get(phase, 0.0), took)


@pytest.mark.slow
def test_128_concurrent_clients_over_3_replicas(pg_cluster: None, seaweed: Seaweed,
                                                tmp_path: Path) -> None:
    """128 labs at once, each from its own address: a third through nginx, the others to a
    replica each; each enrolls, uploads, is approved and downloads a module someone uploaded.
    Zero failed calls, zero lost modules, every module re-hashed, one audit chain."""
    from benchmarks.hub_harness import ModuleFactory

    factory = ModuleFactory()
    clients = 128
    modules = [factory.cgcnn_adapter(10_000 + i, task=f"task-{i % 7}") for i in range(clients)]
    with postgres.database() as url, Cluster(tmp_path / "c", url, seaweed) as cluster:
        assert cluster.nginx is not None
        chan, mods, ops = _stubs(cluster.nginx.address)
        setup_lab = Lab.new("lab-base")
        operator_call(ops, cluster.operator, cluster.hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name=setup_lab.name,
                                               public_key=setup_lab.public_raw))
        base_data, base_card = factory.cgcnn_base()
        base = upload(mods, signed_manifest(setup_lab, base_data, base_card, cluster.hub_id),
                      base_data, start_timeout=600).module
        operator_call(ops, cluster.operator, cluster.hub_id, "ApproveModule",
                      hub_pb2.ApproveModuleRequest(module_id=base.module_id))
        sent: dict[str, bytes] = {base.module_id: base_data}
        for replica in cluster.replicas:  # a hub in service: each replica has taken an upload
            data, card = factory.cgcnn_adapter(len(sent), task="warm")
            _, stub, _ = _stubs(replica.address)
            warm = upload(stub, signed_manifest(setup_lab, data, card, cluster.hub_id), data,
                          start_timeout=600).module.module_id
            operator_call(ops, cluster.operator, cluster.hub_id, "ApproveModule",
                          hub_pb2.ApproveModuleRequest(module_id=warm))
            sent[warm] = data
        lock = threading.Lock()
        downloads = [0]
        phases = _Phases()

        def one_client(index: int) -> None:
            address = (cluster.nginx.address if index % 3 == 0  # type: ignore[union-attr]
                       else cluster.replicas[index % 3].address)
            channel = grpc.intercept_channel(grpc.insecure_channel(address),
                                             _ForwardedFor(f"10.13.{index // 100}.{index % 100}"))
            stub = hub_pb2_grpc.ModuleServiceStub(channel)
            op_stub = hub_pb2_grpc.OperatorServiceStub(channel)
            try:
                lab = Lab.new(f"lab-{index}")
                phases.timed("enroll", lambda: operator_call(
                    op_stub, cluster.operator, cluster.hub_id, "EnrollKey",
                    hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw)))
                data, card = modules[index]
                module_id = phases.timed("upload", lambda: upload(
                    stub, signed_manifest(lab, data, card, cluster.hub_id), data,
                    start_timeout=120).module.module_id)
                assert module_id == hashlib.sha256(data).hexdigest()
                phases.timed("approve", lambda: operator_call(
                    op_stub, cluster.operator, cluster.hub_id, "ApproveModule",
                    hub_pb2.ApproveModuleRequest(module_id=module_id)))
                with lock:
                    sent[module_id] = data
                    choices = list(sent)
                pick = random.Random(index).choice(choices)
                header, got = phases.timed("download", lambda: download(stub, pick))
                assert hashlib.sha256(got).hexdigest() == pick == header.module_id
                assert got == sent[pick]
                with lock:
                    downloads[0] += 1
            finally:
                channel.close()

        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=clients) as pool_:
            results = list(pool_.map(lambda i: _catch(one_client, i), range(clients)))
        print(f"128 clients: {time.monotonic() - began:.1f} s; slowest call per phase (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in phases.slowest.items()))
        assert [r for r in results if r] == []  # zero failed clients
        assert len(sent) == clients + 4 and downloads[0] == clients
        listed: dict[str, int] = {}
        token = ""
        while True:
            page = mods.ListModules(hub_pb2.ListModulesRequest(page_size=1000, page_token=token),
                                    timeout=60)
            listed.update({m.module_id: m.size for m in page.modules})
            token = page.next_page_token
            if not token:
                break
        assert listed == {m: len(d) for m, d in sent.items()}  # zero lost
        for module_id in sent:  # zero corrupt: every module re-hashed
            assert hashlib.sha256(download(mods, module_id)[1]).hexdigest() == module_id
        entries = operator_call(ops, cluster.operator, cluster.hub_id, "AuditLog",
                                hub_pb2.AuditLogRequest(limit=1000)).entries
        # one chain: enrollments, submissions and approvals of every client, in one sequence
        assert len(entries) == 1 + 2 + 2 * 3 + 3 * clients
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
        chan.close()


def _catch(func: Any, index: int) -> str:
    try:
        func(index)
    except BaseException as exc:  # reported together at the end
        return f"client {index}: {type(exc).__name__}: {exc}"
    return ""
