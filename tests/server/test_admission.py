"""Unauthenticated resource exhaustion: idle streams cannot starve the hub (issue class 1).

A real ``moma-hub serve`` process on loopback; hundreds of calls open streams and send
nothing (uploads, downloads and unary calls alike) while a well-behaved client lists and
downloads. The idle calls must be refused at the hub's limits or ended by its idle timeout,
and the well-behaved calls must answer within a generous bound the whole time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.hubtest import HubProcess, Lab, download, operator_call, signed_manifest, upload

IDLE_S = 3
PROMPT_S = 10.0  # generous: a behaviour bound on a loaded 2-core machine, not a benchmark
UPLOADS, DOWNLOADS, UNARY = 300, 20, 20


def _silent(stop: threading.Event) -> Iterator[Any]:
    """A request stream that sends nothing until ``stop`` is set."""
    stop.wait()
    yield from ()


@pytest.fixture()
def idle_hub(tmp_path: Path) -> Iterator[HubProcess]:
    with HubProcess(tmp_path / "hub", extra=["--idle-timeout-s", str(IDLE_S)]) as process:
        yield process


def _approved(hub: HubProcess, module: tuple[bytes, dict[str, Any]]) -> str:
    data, card = module
    lab = Lab.new("lab-idle")
    with hub.channel() as chan:
        ops = hub_pb2_grpc.OperatorServiceStub(chan)
        operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
        stored = upload(hub_pb2_grpc.ModuleServiceStub(chan),
                        signed_manifest(lab, data, card, hub.hub_id), data)
        module_id = stored.module.module_id
        operator_call(ops, hub.operator, hub.hub_id, "ApproveModule",
                      hub_pb2.ApproveModuleRequest(module_id=module_id))
    return module_id


def test_idle_streams_do_not_starve_listing_or_downloads(
        idle_hub: HubProcess, moe18_modules: list[tuple[bytes, dict[str, Any]]]) -> None:
    module_id = _approved(idle_hub, moe18_modules[0])
    expected = moe18_modules[0][0]
    stop = threading.Event()
    channels = [idle_hub.channel() for _ in range(6)]
    calls: list[tuple[str, grpc.Future]] = []
    try:
        for i in range(UPLOADS):
            stub = hub_pb2_grpc.ModuleServiceStub(channels[i % 4])
            calls.append(("upload", stub.Upload.future(_silent(stop))))
        for _ in range(DOWNLOADS):  # a server-streaming call whose request never comes
            method = channels[4].stream_stream(
                "/moma.hub.v1.ModuleService/Download",
                request_serializer=hub_pb2.DownloadRequest.SerializeToString,
                response_deserializer=hub_pb2.DownloadResponse.FromString)
            calls.append(("download", _StreamFuture(method(_silent(stop)))))
        for _ in range(UNARY):  # a unary call whose request never comes
            method = channels[5].stream_unary(
                "/moma.hub.v1.ModuleService/ListModules",
                request_serializer=hub_pb2.ListModulesRequest.SerializeToString,
                response_deserializer=hub_pb2.ListModulesResponse.FromString)
            calls.append(("list", method.future(_silent(stop))))
        time.sleep(1.0)  # let the hub admit or refuse them all

        with idle_hub.channel() as chan:
            stub = hub_pb2_grpc.ModuleServiceStub(chan)
            for _ in range(3):
                began = time.monotonic()
                listing = _retrying(lambda: stub.ListModules(hub_pb2.ListModulesRequest(),
                                                             timeout=PROMPT_S), began)
                assert [m.module_id for m in listing.modules] == [module_id]
                _, data = _retrying(lambda: download(stub, module_id), began)
                assert data == expected
                assert time.monotonic() - began < PROMPT_S

        outcomes: Counter[tuple[str, grpc.StatusCode]] = Counter()
        deadline = time.monotonic() + 10 + 4 * IDLE_S
        for kind, call in calls:  # every idle call ends by itself: refused or timed out
            exc = call.exception(timeout=max(0.1, deadline - time.monotonic()))
            assert isinstance(exc, grpc.RpcError), (kind, exc)
            outcomes[(kind, exc.code())] += 1
    finally:
        stop.set()
        for chan in channels:
            chan.close()
    seen = sorted(f"{kind} {code.name}: {n}" for (kind, code), n in outcomes.items())
    ended = {grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.UNAVAILABLE}  # how a call the hub cancelled can reach the client
    assert {code for _, code in outcomes} <= ended | {grpc.StatusCode.RESOURCE_EXHAUSTED}, seen
    refused = outcomes[("upload", grpc.StatusCode.RESOURCE_EXHAUSTED)]
    assert refused >= UPLOADS // 2, seen  # admission is bounded: most were refused at once
    assert sum(n for (kind, code), n in outcomes.items() if kind == "upload") == UPLOADS, seen
    for kind, count in (("download", DOWNLOADS), ("list", UNARY)):  # ended by the idle timeout
        assert sum(n for (k, code), n in outcomes.items() if k == kind and code in ended) \
            == count, seen

    # the hub still serves, and the log says why the idle calls ended
    with idle_hub.channel() as chan:
        info = hub_pb2_grpc.ModuleServiceStub(chan).GetHubInfo(hub_pb2.GetHubInfoRequest(),
                                                               timeout=PROMPT_S)
        assert info.hub_id == idle_hub.hub_id
    log = (idle_hub.root / "hub.log").read_text()
    assert f"no request message within {IDLE_S} s" in log
    assert "concurrent upload calls" in log


def _retrying(call: Any, began: float) -> Any:
    """``call()``, retried on UNAVAILABLE as the project's client retries idempotent calls
    (HTTP/2 may refuse a new stream while the hub's connection is flooded), within PROMPT_S."""
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() - began > PROMPT_S:
                raise
            time.sleep(0.2)


class _StreamFuture:
    """The ``exception()`` of a streaming call, like a unary call's future."""

    def __init__(self, call: Any) -> None:
        self.call = call

    def exception(self, timeout: float) -> BaseException | None:
        result: list[BaseException | None] = []

        def drain() -> None:
            try:
                for _ in self.call:
                    pass
                result.append(None)
            except grpc.RpcError as exc:
                result.append(exc)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            self.call.cancel()
            return TimeoutError("the call did not end")
        return result[0]
