"""The generated stubs match protos/, import inside ``moma``, and serve over real gRPC."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
STUBS = REPO / "shared" / "moma" / "proto"


@pytest.fixture(scope="module")
def gen_protos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_fresh(
    gen_protos: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = gen_protos.main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_check_names_stale_missing_and_orphaned_files(
    gen_protos: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "proto"
    shutil.copytree(STUBS, out, ignore=shutil.ignore_patterns("__pycache__"))
    assert gen_protos.main(["--check", "--out", str(out)]) == 0

    stale = out / "hub" / "v1" / "hub_pb2.py"
    stale.write_bytes(stale.read_bytes() + b"\n")
    (out / "hub" / "v1" / "hub_pb2.pyi").unlink()
    (out / "hub" / "v1" / "old_pb2.py").write_text("# from a deleted proto\n")
    capsys.readouterr()
    assert gen_protos.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "hub_pb2.py is stale" in err
    assert "hub_pb2.pyi is missing" in err
    assert "old_pb2.py matches no .proto file" in err
    assert err.count("run: python scripts/gen_protos.py") == 3

    # Regenerating repairs exactly that.
    assert gen_protos.main(["--out", str(out)]) == 0
    assert not (out / "hub" / "v1" / "old_pb2.py").exists()
    assert gen_protos.main(["--check", "--out", str(out)]) == 0


def test_stubs_import_inside_moma_and_keep_proto_names() -> None:
    assert hub_pb2.DESCRIPTOR.name == "moma/hub/v1/hub.proto"
    assert hub_pb2.DESCRIPTOR.package == "moma.hub.v1"
    assert hub_pb2_grpc.moma_dot_hub_dot_v1_dot_hub__pb2 is hub_pb2
    source = (STUBS / "hub" / "v1" / "hub_pb2_grpc.py").read_text()
    assert "from moma.proto.hub.v1 import hub_pb2" in source
    assert "from moma.hub" not in source


def test_message_round_trip() -> None:
    header = hub_pb2.DownloadHeader(
        module_id="ab" * 32,
        size=5 * 2**20,
        offset=2**20,
        signed_manifest=hub_pb2.SignedManifest(manifest=b'{"a":1}', signature=bytes(64)),
        contributor_public_key=bytes(range(32)),
        countersignature=hub_pb2.Countersignature(state="approved", signature=b"\x01" * 64),
    )
    message = hub_pb2.DownloadResponse(header=header)
    parsed = hub_pb2.DownloadResponse.FromString(message.SerializeToString())
    assert parsed == message
    assert parsed.WhichOneof("item") == "header"
    assert parsed.header.countersignature.state == "approved"
    chunk = hub_pb2.DownloadResponse(chunk=hub_pb2.Chunk(offset=7, data=b"xyz", crc32=7))
    assert hub_pb2.DownloadResponse.FromString(chunk.SerializeToString()).WhichOneof("item") == (
        "chunk"
    )


def test_operator_body_digest_is_stable_through_parse() -> None:
    """The documented operator digest: deterministic bytes of the request without ``auth``."""
    request = hub_pb2.ApproveModuleRequest(
        auth=hub_pb2.OperatorAuth(key_id="k", nonce="n", time=1, signature=bytes(64)),
        module_id="ab" * 32,
        note="looks good",
    )
    received = hub_pb2.ApproveModuleRequest.FromString(request.SerializeToString())
    for message in (request, received):
        message.ClearField("auth")
    sent_body = request.SerializeToString(deterministic=True)
    assert received.SerializeToString(deterministic=True) == sent_body
    assert sent_body != hub_pb2.ApproveModuleRequest(module_id="ab" * 32).SerializeToString()


class _ListOnly(hub_pb2_grpc.ModuleServiceServicer):
    """Answers ListModules from the request so the test sees the fields crossed the wire."""

    def ListModules(
        self, request: hub_pb2.ListModulesRequest, context: grpc.ServicerContext
    ) -> hub_pb2.ListModulesResponse:
        summary = hub_pb2.ModuleSummary(
            module_id="cd" * 32,
            state=hub_pb2.MODULE_STATE_APPROVED,
            backbone=request.backbone,
            task=request.task,
            size=request.page_size,
        )
        return hub_pb2.ListModulesResponse(
            modules=[summary], next_page_token=request.page_token + "+1"
        )


@pytest.fixture
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    hub_pb2_grpc.add_ModuleServiceServicer_to_server(_ListOnly(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            yield chan
    finally:
        server.stop(None)


def test_list_modules_over_real_grpc(channel: grpc.Channel) -> None:
    stub = hub_pb2_grpc.ModuleServiceStub(channel)
    response = stub.ListModules(
        hub_pb2.ListModulesRequest(
            backbone="cgcnn",
            task="band_gap",
            states=[hub_pb2.MODULE_STATE_APPROVED],
            page_size=25,
            page_token="p1",
        ),
        timeout=10,
    )
    assert [m.backbone for m in response.modules] == ["cgcnn"]
    assert response.modules[0].task == "band_gap"
    assert response.modules[0].size == 25
    assert response.modules[0].state == hub_pb2.MODULE_STATE_APPROVED
    assert response.next_page_token == "p1+1"
    with pytest.raises(grpc.RpcError) as info:
        stub.GetCard(hub_pb2.GetCardRequest(module_id="x"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
