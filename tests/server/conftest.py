"""Fixtures of the hub tests: real MoE-(18) module bytes and cards, one shared hub process.

The hub process is shared by the whole session (starting one costs seconds); tests that need
a hub of their own (restart, TLS, databases) start it themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from moma.modules.moe18 import import_moe18
from moma.modules.store import CARD_FILE, MODULE_FILE
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.hubtest import HubProcess, Lab, operator_call
from tests.server.seaweed import Seaweed


class ModulePool:
    """The 18 imported modules (bytes, card JSON); each test that stores one takes its own.

    ``spare`` is never handed out, so it is never stored on the shared hub: hostile tests use
    it (or bytes derived from it) and are refused for their own reason, not as a duplicate.
    """

    def __init__(self, modules: list[tuple[bytes, dict[str, Any]]]) -> None:
        self.modules = modules
        self.next = 0

    @property
    def spare(self) -> tuple[bytes, dict[str, Any]]:
        data, card = self.modules[-1]
        return data, json.loads(json.dumps(card))

    def take(self) -> tuple[bytes, dict[str, Any]]:
        if self.next >= len(self.modules) - 1:
            raise RuntimeError("all MoE-(18) modules are taken: use another hub's pool.modules")
        self.next += 1
        data, card = self.modules[self.next - 1]
        return data, json.loads(json.dumps(card))


@pytest.fixture(scope="session")
def moe18_modules(tmp_path_factory: pytest.TempPathFactory, moe18: Path
                  ) -> list[tuple[bytes, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("moe18") / "modules"
    cards = import_moe18(moe18, out)
    return [((out / c.task / MODULE_FILE).read_bytes(),
             json.loads((out / c.task / CARD_FILE).read_text())) for c in cards]


@pytest.fixture(scope="session")
def pool(moe18_modules: list[tuple[bytes, dict[str, Any]]]) -> ModulePool:
    return ModulePool(moe18_modules)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path_factory.mktemp("hub")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def channel(hub: HubProcess) -> Iterator[grpc.Channel]:
    with hub.channel() as chan:
        yield chan


@pytest.fixture(scope="session")
def modules(channel: grpc.Channel) -> hub_pb2_grpc.ModuleServiceStub:
    return hub_pb2_grpc.ModuleServiceStub(channel)


@pytest.fixture(scope="session")
def operators(channel: grpc.Channel) -> hub_pb2_grpc.OperatorServiceStub:
    return hub_pb2_grpc.OperatorServiceStub(channel)


@pytest.fixture(scope="session")
def lab(hub: HubProcess, operators: hub_pb2_grpc.OperatorServiceStub) -> Lab:
    """A lab enrolled on the module's hub."""
    lab = Lab.new("lab-a")
    operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                  hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
    return lab


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One real SeaweedFS S3 gateway for the session; each user takes its own bucket."""
    store = Seaweed(tmp_path_factory.mktemp("seaweed")).start()
    try:
        yield store
    finally:
        store.stop()
