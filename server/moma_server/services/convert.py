"""Rows of the metadata store as protocol messages."""

from __future__ import annotations

from moma.proto.hub.v1 import hub_pb2
from moma_server.store.models import AuditRow, KeyRow, ModuleRow

STATE_TO_PROTO = {
    "pending": hub_pb2.MODULE_STATE_PENDING,
    "approved": hub_pb2.MODULE_STATE_APPROVED,
    "rejected": hub_pb2.MODULE_STATE_REJECTED,
    "revoked": hub_pb2.MODULE_STATE_REVOKED,
}
PROTO_TO_STATE = {v: k for k, v in STATE_TO_PROTO.items()}


def summary(row: ModuleRow, lab_name: str = "") -> hub_pb2.ModuleSummary:
    return hub_pb2.ModuleSummary(
        module_id=row.module_id, state=STATE_TO_PROTO[row.state], backbone=row.backbone,
        base_sha256=row.base_sha256, kind=row.kind, task=row.task, property=row.property,
        unit=row.unit, size=row.size, contributor_key_id=row.contributor_key_id,
        lab_name=lab_name, created_at=row.created_at, submitted_at=row.submitted_at,
        state_changed_at=row.state_changed_at)


def signed_manifest(row: ModuleRow) -> hub_pb2.SignedManifest:
    return hub_pb2.SignedManifest(manifest=row.manifest, signature=row.manifest_signature)


def countersignature(row: ModuleRow) -> hub_pb2.Countersignature | None:
    """The stored countersignature, or None if the module was never approved."""
    if row.cs_signature is None or row.cs_state is None:
        return None
    return hub_pb2.Countersignature(
        manifest_sha256=row.manifest_sha256, module_sha256=row.module_id, state=row.cs_state,
        time=row.cs_time or "", hub_key_id=row.cs_hub_key_id or "", signature=row.cs_signature)


def key_info(row: KeyRow) -> hub_pb2.KeyInfo:
    return hub_pb2.KeyInfo(
        key_id=row.key_id, lab_name=row.lab_name, public_key=row.public_key,
        role=hub_pb2.KEY_ROLE_CONTRIBUTOR, revoked=row.revoked_at is not None,
        enrolled_at=row.enrolled_at, revoked_at=row.revoked_at or "",
        revoke_reason=row.revoke_reason or "")


def audit_entry(row: AuditRow) -> hub_pb2.AuditEntry:
    return hub_pb2.AuditEntry(
        seq=row.seq, time=row.time, actor_key_id=row.actor_key_id, action=row.action,
        subject=row.subject, detail_json=row.detail_json, prev_hash=row.prev_hash,
        entry_hash=row.entry_hash)
