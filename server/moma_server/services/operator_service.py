"""OperatorService: lab keys, curation decisions and the audit log.

Each decision changes a row and appends its audit entry in one transaction; approval also
stores the hub's countersignature over the manifest digest, and revocation replaces it with a
signed revocation notice, so a client holding an old approval can learn it was withdrawn.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from sqlalchemy import select

from moma.errors import TrustError
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.safe_text import unsafe_char
from moma.trust.countersignature import countersign
from moma.trust.keys import key_id, public_key_from_raw, public_key_to_raw
from moma.trust.manifest import SignedManifest
from moma_server.curation import BY_RPC, Transition, allowed_from
from moma_server.services import convert
from moma_server.services.errors import (
    HubError,
    handle_errors,
    invalid,
    not_found,
    precondition,
    shown,
)
from moma_server.services.hub import Hub
from moma_server.services.operator_auth import authenticate
from moma_server.store.metadata import details, utc_now
from moma_server.store.models import KeyRow, ModuleRow

DEFAULT_AUDIT_PAGE = 100
MAX_AUDIT_PAGE = 1000
MAX_TEXT = 1000
MAX_LAB_NAME = 200


def _text(value: str, what: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    value = value.strip()
    if required and not value:
        raise invalid(f"{what} is empty: give one")
    if len(value) > limit:
        raise invalid(f"{what} is {len(value)} characters, over {limit}: shorten it")
    bad = next((ch for ch in value if unsafe_char(ch)), None)
    if bad is not None:
        raise invalid(f"{what} contains the control or invisible character U+{ord(bad):04X}: "
                      "use printable text on one line")
    return value


class OperatorService(hub_pb2_grpc.OperatorServiceServicer):
    """Curation RPCs; every one authenticated by :func:`authenticate` first."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # -- keys ---------------------------------------------------------------------------------

    @handle_errors
    def EnrollKey(self, request: hub_pb2.EnrollKeyRequest,
                  context: grpc.ServicerContext) -> hub_pb2.EnrollKeyResponse:
        actor = authenticate(self.hub, request, "EnrollKey")
        lab = _text(request.lab_name, "lab_name", required=True, limit=MAX_LAB_NAME)
        try:
            kid = key_id(public_key_from_raw(request.public_key))
        except TrustError as exc:
            raise invalid(str(exc)) from None
        if kid in self.hub.config.operator_keys:
            raise invalid(f"key {kid} is an operator key of this hub: give each lab its own key "
                          "(moma-client keys init)")
        meta = self.hub.metadata
        with meta.write() as session:
            existing = session.get(KeyRow, kid)
            if existing is not None:
                state = "revoked, and cannot come back" if existing.revoked_at else "enrolled"
                raise HubError(grpc.StatusCode.ALREADY_EXISTS,
                               f"key {kid} is already {state} (lab {existing.lab_name!r}); a "
                               "lab with a new key generates a new key pair")
            row = KeyRow(key_id=kid, lab_name=lab, public_key=bytes(request.public_key),
                         enrolled_at=utc_now(), enrolled_by=actor)
            session.add(row)
            meta.append_audit(session, actor=actor, action="key.enroll", subject=kid,
                              details={"lab_name": lab})
        return hub_pb2.EnrollKeyResponse(key=convert.key_info(row))

    @handle_errors
    def RevokeKey(self, request: hub_pb2.RevokeKeyRequest,
                  context: grpc.ServicerContext) -> hub_pb2.RevokeKeyResponse:
        actor = authenticate(self.hub, request, "RevokeKey")
        reason = _text(request.reason, "reason")
        if request.key_id in self.hub.config.operator_keys:
            raise precondition(f"key {shown(request.key_id)} is an operator key, configured on "
                               "the hub host: remove its --operator-key and restart the hub")
        meta = self.hub.metadata
        with meta.write() as session:
            row = session.get(KeyRow, request.key_id)
            if row is None:
                raise not_found(f"no enrolled key {shown(request.key_id)}: see "
                                "`moma-hub keys list`")
            if row.revoked_at is not None:
                raise precondition(f"key {row.key_id} was already revoked at {row.revoked_at}")
            row.revoked_at = utc_now()
            row.revoke_reason = reason
            meta.append_audit(session, actor=actor, action="key.revoke", subject=row.key_id,
                              details=details(lab_name=row.lab_name, reason=reason))
        return hub_pb2.RevokeKeyResponse(key=convert.key_info(row))

    @handle_errors
    def ListKeys(self, request: hub_pb2.ListKeysRequest,
                 context: grpc.ServicerContext) -> hub_pb2.ListKeysResponse:
        authenticate(self.hub, request, "ListKeys")
        operators = [hub_pb2.KeyInfo(key_id=kid, lab_name="(hub operator)",
                                     public_key=public_key_to_raw(pub),
                                     role=hub_pb2.KEY_ROLE_OPERATOR)
                     for kid, pub in sorted(self.hub.config.operator_keys.items())]
        labs = [convert.key_info(r) for r in self.hub.metadata.list_keys(request.include_revoked)]
        return hub_pb2.ListKeysResponse(keys=operators + labs)

    # -- modules ------------------------------------------------------------------------------

    def _transition(self, module_id: str, actor: str, transition: Transition,
                    text: str) -> ModuleRow:
        """Apply one row of the curation table, with its audit entry, in one transaction."""
        meta, t = self.hub.metadata, transition
        with meta.write() as session:
            # row-locked: two replicas deciding on one module at once are serialized
            row = session.scalars(select(ModuleRow).where(ModuleRow.module_id == module_id)
                                  .with_for_update()).first()
            if row is None:
                raise not_found(f"no module {shown(module_id)} on this hub: check the id with "
                                "`moma-hub modules list --state all`")
            if row.state != t.source:
                possible = ", ".join(allowed_from(row.state)) or "nothing more"
                raise precondition(f"module {module_id} is {row.state}; only a {t.source} module "
                                   f"can become {t.target} (a {row.state} module allows: "
                                   f"{possible})")
            if t.target == "approved":
                key = session.get(KeyRow, row.contributor_key_id)
                if key is None or key.revoked_at is not None:
                    raise precondition(f"the contributor key {row.contributor_key_id} of module "
                                       f"{module_id} was revoked: reject the module instead")
            now = datetime.now(UTC)
            row.state = t.target
            row.state_changed_at = utc_now()
            info = {t.text_field: text}
            if t.countersign:
                cs = countersign(SignedManifest(row.manifest, row.manifest_signature),
                                 self.hub.config.hub_key, state=t.target, now=now)
                row.cs_state, row.cs_time = cs.state, cs.time
                row.cs_hub_key_id, row.cs_signature = cs.hub_key_id, cs.signature
                info["countersigned_at"] = cs.time
                info["manifest_sha256"] = row.manifest_sha256
            meta.append_audit(session, actor=actor, action=t.audit_action, subject=module_id,
                              details=details(**info))
        return row

    def _curate(self, request: Any, rpc: str) -> ModuleRow:
        """Authenticate, then apply the table's row for ``rpc`` to ``request.module_id``."""
        actor = authenticate(self.hub, request, rpc)
        t = BY_RPC[rpc]
        text = _text(getattr(request, t.text_field), t.text_field, required=t.text_required)
        return self._transition(request.module_id, actor, t, text)

    def _summary(self, row: ModuleRow) -> hub_pb2.ModuleSummary:
        labs = self.hub.metadata.lab_names([row.contributor_key_id])
        return convert.summary(row, labs.get(row.contributor_key_id, ""))

    @handle_errors
    def ApproveModule(self, request: hub_pb2.ApproveModuleRequest,
                      context: grpc.ServicerContext) -> hub_pb2.ApproveModuleResponse:
        row = self._curate(request, "ApproveModule")
        return hub_pb2.ApproveModuleResponse(module=self._summary(row),
                                             countersignature=convert.countersignature(row))

    @handle_errors
    def RejectModule(self, request: hub_pb2.RejectModuleRequest,
                     context: grpc.ServicerContext) -> hub_pb2.RejectModuleResponse:
        return hub_pb2.RejectModuleResponse(
            module=self._summary(self._curate(request, "RejectModule")))

    @handle_errors
    def RevokeModule(self, request: hub_pb2.RevokeModuleRequest,
                     context: grpc.ServicerContext) -> hub_pb2.RevokeModuleResponse:
        return hub_pb2.RevokeModuleResponse(
            module=self._summary(self._curate(request, "RevokeModule")))

    # -- audit --------------------------------------------------------------------------------

    @handle_errors
    def AuditLog(self, request: hub_pb2.AuditLogRequest,
                 context: grpc.ServicerContext) -> hub_pb2.AuditLogResponse:
        authenticate(self.hub, request, "AuditLog")
        if request.after_seq < 0 or request.limit < 0:
            raise invalid("after_seq and limit must not be negative")
        limit = min(request.limit or DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE)
        rows, more = self.hub.metadata.audit_entries(request.after_seq, limit)
        return hub_pb2.AuditLogResponse(entries=[convert.audit_entry(r) for r in rows],
                                        more=more)
