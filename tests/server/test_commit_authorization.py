"""Authorization holds at the moment of commit, not only when an upload starts."""

from __future__ import annotations

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.conftest import ModulePool
from tests.server.hubtest import HubProcess, Lab, chunks, operator_call, signed_manifest


def test_upload_started_before_its_key_was_revoked_is_refused_at_commit(
        hub: HubProcess, modules: hub_pb2_grpc.ModuleServiceStub,
        operators: hub_pb2_grpc.OperatorServiceStub, pool: ModulePool) -> None:
    lab = Lab.new("lab-revoked-mid-upload")
    operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                  hub_pb2.EnrollKeyRequest(lab_name=lab.name, public_key=lab.public_raw))
    data, card = pool.take()
    start = modules.StartUpload(hub_pb2.StartUploadRequest(
        signed_manifest=signed_manifest(lab, data, card, hub.hub_id)), timeout=60)
    assert modules.Upload(chunks(start.upload_id, data), timeout=120).offset == len(data)
    operator_call(operators, hub.operator, hub.hub_id, "RevokeKey",
                  hub_pb2.RevokeKeyRequest(key_id=lab.key_id, reason="compromised"))
    with pytest.raises(grpc.RpcError) as err:
        modules.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                             timeout=120)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"contributor key {lab.key_id} was revoked" in err.value.details()
    every = [hub_pb2.MODULE_STATE_PENDING, hub_pb2.MODULE_STATE_APPROVED,
             hub_pb2.MODULE_STATE_REJECTED, hub_pb2.MODULE_STATE_REVOKED]
    listed = modules.ListModules(hub_pb2.ListModulesRequest(states=every, page_size=1000),
                                 timeout=30).modules
    assert lab.key_id not in {m.contributor_key_id for m in listed}
    with pytest.raises(grpc.RpcError) as err:  # the session is gone with its bytes
        modules.GetUploadStatus(hub_pb2.GetUploadStatusRequest(upload_id=start.upload_id),
                                timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert not (hub.store / "tmp" / start.upload_id).exists()
    entries = operator_call(operators, hub.operator, hub.hub_id, "AuditLog",
                            hub_pb2.AuditLogRequest()).entries
    assert not [e for e in entries if e.action == "module.submit" and e.actor_key_id == lab.key_id]
