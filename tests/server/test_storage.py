"""The same storage tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma_server.store.audit import GENESIS_HASH
from moma_server.store.metadata import MetadataStore, ReplayError
from tests.server import postgres
from tests.server.conftest import ModulePool
from tests.server.hubtest import HubProcess, Lab, download, operator_call, signed_manifest, upload
from tests.server.seaweed import Seaweed


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[None]:
    with postgres.cluster():
        yield


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    request.getfixturevalue("pg_cluster")
    with postgres.database() as url:
        yield url


def test_audit_chain_nonces_and_tampering(db_url: str) -> None:
    store = MetadataStore(db_url)
    try:
        for index in range(5):
            with store.write() as session:
                store.append_audit(session, actor="a" * 16, action="test.event",
                                   subject=f"s{index}", details={"index": index})
        rows, more = store.audit_entries(0, 10)
        assert [r.seq for r in rows] == [1, 2, 3, 4, 5] and not more
        assert rows[0].prev_hash == GENESIS_HASH
        assert all(r.prev_hash == p.entry_hash for p, r in itertools.pairwise(rows))
        assert store.verify_audit() == 5
        # a failed transaction appends nothing
        with pytest.raises(RuntimeError), store.write() as session:
            store.append_audit(session, actor="a" * 16, action="x", subject="y")
            raise RuntimeError("boom")
        assert store.verify_audit() == 5

        store.consume_nonce("ab" * 16, "operator", "k" * 16)
        with pytest.raises(ReplayError):
            store.consume_nonce("ab" * 16, "operator", "k" * 16)
        assert store.prune_nonces("2000-01-01T00:00:00Z") == 0
        assert store.prune_nonces("2999-01-01T00:00:00Z") == 1
        store.consume_nonce("ab" * 16, "operator", "k" * 16)  # forgotten: its time guards it

        with store.engine.begin() as con:
            con.execute(text("UPDATE audit_log SET subject = 'forged' WHERE seq = 3"))
        with pytest.raises(ValueError, match=r"entry 3 .* was edited"):
            store.verify_audit()
        with store.engine.begin() as con:
            con.execute(text("UPDATE audit_log SET subject = 's2' WHERE seq = 3"))
            con.execute(text("DELETE FROM audit_log WHERE seq = 4"))
        with pytest.raises(ValueError, match=r"seq 5 found where 4"):
            store.verify_audit()
    finally:
        store.close()


@pytest.fixture()
def pg_url(pg_cluster: None) -> Iterator[str]:
    with postgres.database() as url:
        yield url


@pytest.mark.parametrize("store", ["folder", "s3"])
def test_hub_on_postgresql_end_to_end_and_restart(store: str, pg_url: str, tmp_path: Path,
                                                  pool: ModulePool,
                                                  request: pytest.FixtureRequest) -> None:
    """The SQLite twin of this test is test_restart.py (the default database).

    With ``s3`` the blobs live in a real SeaweedFS bucket: the S3 round trip of the default run.
    """
    db_url = pg_url
    hub = HubProcess(tmp_path / "hub", db=db_url)
    if store == "s3":
        weed: Seaweed = request.getfixturevalue("seaweed")
        hub.store_url = f"s3://{weed.bucket()}/hub"
        hub.env = weed.env
    hub.start()
    try:
        with hub.channel() as chan:
            mods = hub_pb2_grpc.ModuleServiceStub(chan)
            ops = hub_pb2_grpc.OperatorServiceStub(chan)
            lab = Lab.new("lab-db")
            operator_call(ops, hub.operator, hub.hub_id, "EnrollKey",
                          hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
            data, card = pool.spare  # never stored on the shared hub; this hub is new
            signed = signed_manifest(lab, data, card, hub.hub_id)
            module_id = upload(mods, signed, data).module.module_id
            assert module_id == hashlib.sha256(data).hexdigest()
            operator_call(ops, hub.operator, hub.hub_id, "ApproveModule",
                          hub_pb2.ApproveModuleRequest(module_id=module_id))
            # hostile: a replayed manifest is refused (the nonce table holds on this database)
            with pytest.raises(grpc.RpcError) as err:
                mods.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "replayed" in err.value.details()
        hub.stop()
        hub.start()
        with hub.channel() as chan:
            mods = hub_pb2_grpc.ModuleServiceStub(chan)
            ops = hub_pb2_grpc.OperatorServiceStub(chan)
            listed = mods.ListModules(hub_pb2.ListModulesRequest(), timeout=10).modules
            assert [(m.module_id, m.lab_name) for m in listed] == [(module_id, "lab-db")]
            assert download(mods, module_id)[1] == data
            entries = operator_call(ops, hub.operator, hub.hub_id, "AuditLog",
                                    hub_pb2.AuditLogRequest()).entries
            assert [e.action for e in entries] == ["key.enroll", "module.submit",
                                                   "module.approve"]
        if store == "s3":  # the blob is in the bucket under its digest, and nothing else is
            keys = [o["Key"] for o in weed.client().list_objects_v2(
                Bucket=hub.store_url.split("/")[2]).get("Contents", [])]
            assert keys == [f"hub/sha256/{module_id[:2]}/{module_id[2:]}"]
    finally:
        hub.stop()
