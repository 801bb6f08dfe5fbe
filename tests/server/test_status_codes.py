"""Right status codes and causes (issue class 6), against a real hub process.

Malformed protobuf bytes and page tokens the hub never issued are INVALID_ARGUMENT; an
oversized id is never echoed back; a full disk is RESOURCE_EXHAUSTED and a database that
stays locked is UNAVAILABLE, each with its cause, never a bare INTERNAL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.conftest import ModulePool
from tests.server.hubtest import HubProcess, Lab, chunks, operator_call, signed_manifest
from tests.server.test_hostile import crafted, refused

SERVICE = "/moma.hub.v1.ModuleService/"
HUGE = "a" * 100_000


def _raw_unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(SERVICE + method)  # bytes in, bytes out: no serializer


@pytest.mark.parametrize("method", ["ListModules", "GetCard", "StartUpload", "GetHubInfo"])
def test_malformed_request_bytes(channel: grpc.Channel, method: str) -> None:
    call = _raw_unary(channel, method)
    message = refused(lambda: call(b"\xff\xff\xff\xff", timeout=30),
                      grpc.StatusCode.INVALID_ARGUMENT, "not a valid protobuf message", method)
    assert "Exception deserializing" not in message


def test_malformed_bytes_in_an_upload_stream(channel: grpc.Channel) -> None:
    upload = channel.stream_unary(SERVICE + "Upload")
    refused(lambda: upload(iter([b"\x0a\xff\xff\xff\x0f"]), timeout=30),
            grpc.StatusCode.INVALID_ARGUMENT, "request message 1 of")


@pytest.mark.parametrize("token", ["-1", "0", "1" * 20, "9223372036854775808", "abc", "1e3",
                                   " 5", HUGE])
def test_page_tokens_not_issued_by_the_hub(modules: hub_pb2_grpc.ModuleServiceStub,
                                           token: str) -> None:
    message = refused(lambda: modules.ListModules(hub_pb2.ListModulesRequest(page_token=token),
                                                  timeout=30),
                      grpc.StatusCode.INVALID_ARGUMENT, "page_token", "not issued by this hub")
    assert len(message) < 400


def test_largest_valid_page_token(modules: hub_pb2_grpc.ModuleServiceStub) -> None:
    page = modules.ListModules(hub_pb2.ListModulesRequest(page_token=str(2**63 - 1)), timeout=30)
    assert list(page.modules) == [] and page.next_page_token == ""


def test_oversized_ids_are_not_echoed(channel: grpc.Channel,
                                      modules: hub_pb2_grpc.ModuleServiceStub) -> None:
    for call in (lambda: modules.GetCard(hub_pb2.GetCardRequest(module_id=HUGE), timeout=30),
                 lambda: list(modules.Download(hub_pb2.DownloadRequest(module_id=HUGE),
                                               timeout=30))):
        message = refused(call, grpc.StatusCode.INVALID_ARGUMENT, "is not a module id",
                          "100000 characters")
        assert len(message) < 400
    message = refused(lambda: modules.GetUploadStatus(
        hub_pb2.GetUploadStatusRequest(upload_id=HUGE), timeout=30), grpc.StatusCode.NOT_FOUND)
    assert len(message) < 400
    ops = hub_pb2_grpc.OperatorServiceStub(channel)
    request = hub_pb2.ListKeysRequest()
    request.auth.key_id = HUGE
    message = refused(lambda: ops.ListKeys(request, timeout=30), grpc.StatusCode.UNAUTHENTICATED)
    assert len(message) < 400


@pytest.fixture()
def slow_lock_hub(tmp_path: Path) -> Iterator[HubProcess]:
    root = tmp_path / "hub"
    db = f"sqlite:///{(root / 'store' / 'hub.db').resolve()}?timeout=1"
    with HubProcess(root, db=db) as process:
        yield process


def test_full_disk_and_locked_database(slow_lock_hub: HubProcess, pool: ModulePool) -> None:
    hub = slow_lock_hub
    data, card = pool.modules[2]
    card = crafted(card, data)
    lab = Lab.new("disk-lab")
    with hub.channel() as chan:
        modules = hub_pb2_grpc.ModuleServiceStub(chan)
        ops = hub_pb2_grpc.OperatorServiceStub(chan)
        operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
        start = modules.StartUpload(hub_pb2.StartUploadRequest(
            signed_manifest=signed_manifest(lab, data, card, hub.hub_id)), timeout=60)
        # The kernel answers ENOSPC for every write to /dev/full: the upload's temp blob is
        # pointed there, so the hub's own write fails as on a full disk.
        os.symlink("/dev/full", hub.store / "tmp" / start.upload_id)
        message = refused(lambda: modules.Upload(chunks(start.upload_id, data), timeout=60),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, "storage is full",
                          "No space left on device")
        assert "internal" not in message.lower()

        with sqlite3.connect(hub.store / "hub.db", timeout=5, isolation_level=None) as con:
            con.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            try:
                other = Lab.new("locked-lab")
                refused(lambda: operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                                              hub_pb2.EnrollKeyRequest(
                                                  lab_name=other.name,
                                                  public_key=other.public_raw)),
                        grpc.StatusCode.UNAVAILABLE, "database is unavailable",
                        "database is locked", "retry")
                # reads still answer while the lock is held
                assert modules.GetHubInfo(hub_pb2.GetHubInfoRequest(), timeout=30).hub_id
            finally:
                con.execute("ROLLBACK")
        again = Lab.new("after-lab")
        operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name=again.name, public_key=again.public_raw))
