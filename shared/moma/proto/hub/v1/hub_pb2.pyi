# Post-processed by scripts/gen_protos.py: imports rewritten to moma.proto.
# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModuleState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODULE_STATE_UNSPECIFIED: _ClassVar[ModuleState]
    MODULE_STATE_PENDING: _ClassVar[ModuleState]
    MODULE_STATE_APPROVED: _ClassVar[ModuleState]
    MODULE_STATE_REJECTED: _ClassVar[ModuleState]
    MODULE_STATE_REVOKED: _ClassVar[ModuleState]

class KeyRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_ROLE_UNSPECIFIED: _ClassVar[KeyRole]
    KEY_ROLE_CONTRIBUTOR: _ClassVar[KeyRole]
    KEY_ROLE_OPERATOR: _ClassVar[KeyRole]
MODULE_STATE_UNSPECIFIED: ModuleState
MODULE_STATE_PENDING: ModuleState
MODULE_STATE_APPROVED: ModuleState
MODULE_STATE_REJECTED: ModuleState
MODULE_STATE_REVOKED: ModuleState
KEY_ROLE_UNSPECIFIED: KeyRole
KEY_ROLE_CONTRIBUTOR: KeyRole
KEY_ROLE_OPERATOR: KeyRole

class SignedManifest(_message.Message):
    __slots__ = ("manifest", "signature")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    manifest: bytes
    signature: bytes
    def __init__(self, manifest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Countersignature(_message.Message):
    __slots__ = ("manifest_sha256", "module_sha256", "state", "time", "hub_key_id", "signature")
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODULE_SHA256_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    HUB_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    manifest_sha256: str
    module_sha256: str
    state: str
    time: str
    hub_key_id: str
    signature: bytes
    def __init__(self, manifest_sha256: _Optional[str] = ..., module_sha256: _Optional[str] = ..., state: _Optional[str] = ..., time: _Optional[str] = ..., hub_key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("offset", "data", "crc32")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    crc32: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., crc32: _Optional[int] = ...) -> None: ...

class ModuleSummary(_message.Message):
    __slots__ = ("module_id", "state", "backbone", "base_sha256", "kind", "task", "property", "unit", "size", "contributor_key_id", "lab_name", "created_at", "submitted_at", "state_changed_at")
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    BASE_SHA256_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTOR_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    LAB_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    module_id: str
    state: ModuleState
    backbone: str
    base_sha256: str
    kind: str
    task: str
    property: str
    unit: str
    size: int
    contributor_key_id: str
    lab_name: str
    created_at: str
    submitted_at: str
    state_changed_at: str
    def __init__(self, module_id: _Optional[str] = ..., state: _Optional[_Union[ModuleState, str]] = ..., backbone: _Optional[str] = ..., base_sha256: _Optional[str] = ..., kind: _Optional[str] = ..., task: _Optional[str] = ..., property: _Optional[str] = ..., unit: _Optional[str] = ..., size: _Optional[int] = ..., contributor_key_id: _Optional[str] = ..., lab_name: _Optional[str] = ..., created_at: _Optional[str] = ..., submitted_at: _Optional[str] = ..., state_changed_at: _Optional[str] = ...) -> None: ...

class GetHubInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHubInfoResponse(_message.Message):
    __slots__ = ("hub_id", "hub_public_key", "hub_key_id", "max_module_size", "chunk_size", "manifest_tolerance_s", "probe_set_sha256", "probe_set_name")
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    HUB_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    HUB_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_MODULE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_TOLERANCE_S_FIELD_NUMBER: _ClassVar[int]
    PROBE_SET_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROBE_SET_NAME_FIELD_NUMBER: _ClassVar[int]
    hub_id: str
    hub_public_key: bytes
    hub_key_id: str
    max_module_size: int
    chunk_size: int
    manifest_tolerance_s: int
    probe_set_sha256: str
    probe_set_name: str
    def __init__(self, hub_id: _Optional[str] = ..., hub_public_key: _Optional[bytes] = ..., hub_key_id: _Optional[str] = ..., max_module_size: _Optional[int] = ..., chunk_size: _Optional[int] = ..., manifest_tolerance_s: _Optional[int] = ..., probe_set_sha256: _Optional[str] = ..., probe_set_name: _Optional[str] = ...) -> None: ...

class ListModulesRequest(_message.Message):
    __slots__ = ("backbone", "base_sha256", "kind", "task", "states", "page_size", "page_token")
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    BASE_SHA256_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    backbone: str
    base_sha256: str
    kind: str
    task: str
    states: _containers.RepeatedScalarFieldContainer[ModuleState]
    page_size: int
    page_token: str
    def __init__(self, backbone: _Optional[str] = ..., base_sha256: _Optional[str] = ..., kind: _Optional[str] = ..., task: _Optional[str] = ..., states: _Optional[_Iterable[_Union[ModuleState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModulesResponse(_message.Message):
    __slots__ = ("modules", "next_page_token")
    MODULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    modules: _containers.RepeatedCompositeFieldContainer[ModuleSummary]
    next_page_token: str
    def __init__(self, modules: _Optional[_Iterable[_Union[ModuleSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCardRequest(_message.Message):
    __slots__ = ("module_id",)
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    module_id: str
    def __init__(self, module_id: _Optional[str] = ...) -> None: ...

class GetCardResponse(_message.Message):
    __slots__ = ("module", "card_json", "signed_manifest", "contributor_public_key", "countersignature", "probe")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    CARD_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNED_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTOR_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    COUNTERSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    module: ModuleSummary
    card_json: bytes
    signed_manifest: SignedManifest
    contributor_public_key: bytes
    countersignature: Countersignature
    probe: ProbeSummary
    def __init__(self, module: _Optional[_Union[ModuleSummary, _Mapping]] = ..., card_json: _Optional[bytes] = ..., signed_manifest: _Optional[_Union[SignedManifest, _Mapping]] = ..., contributor_public_key: _Optional[bytes] = ..., countersignature: _Optional[_Union[Countersignature, _Mapping]] = ..., probe: _Optional[_Union[ProbeSummary, _Mapping]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("module_id", "offset")
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    module_id: str
    offset: int
    def __init__(self, module_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class DownloadHeader(_message.Message):
    __slots__ = ("module_id", "size", "offset", "signed_manifest", "contributor_public_key", "countersignature")
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIGNED_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTOR_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    COUNTERSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    module_id: str
    size: int
    offset: int
    signed_manifest: SignedManifest
    contributor_public_key: bytes
    countersignature: Countersignature
    def __init__(self, module_id: _Optional[str] = ..., size: _Optional[int] = ..., offset: _Optional[int] = ..., signed_manifest: _Optional[_Union[SignedManifest, _Mapping]] = ..., contributor_public_key: _Optional[bytes] = ..., countersignature: _Optional[_Union[Countersignature, _Mapping]] = ...) -> None: ...

class DownloadResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: DownloadHeader
    chunk: Chunk
    def __init__(self, header: _Optional[_Union[DownloadHeader, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class StartUploadRequest(_message.Message):
    __slots__ = ("signed_manifest",)
    SIGNED_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    signed_manifest: SignedManifest
    def __init__(self, signed_manifest: _Optional[_Union[SignedManifest, _Mapping]] = ...) -> None: ...

class StartUploadResponse(_message.Message):
    __slots__ = ("upload_id", "chunk_size", "expires_at")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    chunk_size: int
    expires_at: str
    def __init__(self, upload_id: _Optional[str] = ..., chunk_size: _Optional[int] = ..., expires_at: _Optional[str] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("upload_id", "chunk")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    chunk: Chunk
    def __init__(self, upload_id: _Optional[str] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("offset",)
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    def __init__(self, offset: _Optional[int] = ...) -> None: ...

class GetUploadStatusRequest(_message.Message):
    __slots__ = ("upload_id",)
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    def __init__(self, upload_id: _Optional[str] = ...) -> None: ...

class GetUploadStatusResponse(_message.Message):
    __slots__ = ("offset", "size", "module_id", "expires_at")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    offset: int
    size: int
    module_id: str
    expires_at: str
    def __init__(self, offset: _Optional[int] = ..., size: _Optional[int] = ..., module_id: _Optional[str] = ..., expires_at: _Optional[str] = ...) -> None: ...

class FinishUploadRequest(_message.Message):
    __slots__ = ("upload_id",)
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    def __init__(self, upload_id: _Optional[str] = ...) -> None: ...

class FinishUploadResponse(_message.Message):
    __slots__ = ("module",)
    MODULE_FIELD_NUMBER: _ClassVar[int]
    module: ModuleSummary
    def __init__(self, module: _Optional[_Union[ModuleSummary, _Mapping]] = ...) -> None: ...

class OperatorAuth(_message.Message):
    __slots__ = ("key_id", "nonce", "time", "signature")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    nonce: str
    time: int
    signature: bytes
    def __init__(self, key_id: _Optional[str] = ..., nonce: _Optional[str] = ..., time: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_id", "lab_name", "public_key", "role", "revoked", "enrolled_at", "revoked_at", "revoke_reason")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    LAB_NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    lab_name: str
    public_key: bytes
    role: KeyRole
    revoked: bool
    enrolled_at: str
    revoked_at: str
    revoke_reason: str
    def __init__(self, key_id: _Optional[str] = ..., lab_name: _Optional[str] = ..., public_key: _Optional[bytes] = ..., role: _Optional[_Union[KeyRole, str]] = ..., revoked: _Optional[bool] = ..., enrolled_at: _Optional[str] = ..., revoked_at: _Optional[str] = ..., revoke_reason: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "time", "actor_key_id", "action", "subject", "detail_json", "prev_hash", "entry_hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: str
    actor_key_id: str
    action: str
    subject: str
    detail_json: str
    prev_hash: str
    entry_hash: str
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[str] = ..., actor_key_id: _Optional[str] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., detail_json: _Optional[str] = ..., prev_hash: _Optional[str] = ..., entry_hash: _Optional[str] = ...) -> None: ...

class EnrollKeyRequest(_message.Message):
    __slots__ = ("auth", "lab_name", "public_key")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    LAB_NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    auth: OperatorAuth
    lab_name: str
    public_key: bytes
    def __init__(self, auth: _Optional[_Union[OperatorAuth, _Mapping]] = ..., lab_name: _Optional[str] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class EnrollKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyInfo
    def __init__(self, key: _Optional[_Union[KeyInfo, _Mapping]] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("auth", "key_id", "reason")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    auth: OperatorAuth
    key_id: str
    reason: str
    def __init__(self, auth: _Optional[_Union[OperatorAuth, _Mapping]] = ..., key_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyInfo
    def __init__(self, key: _Optional[_Union[KeyInfo, _Mapping]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("auth", "include_revoked")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    auth: OperatorAuth
    include_revoked: bool
    def __init__(self, auth: _Optional[_Union[OperatorAuth, _Mapping]] = ..., include_revoked: _Optional[bool] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ...) -> None: ...

class ApproveModuleRequest(_message.Message):
    __slots__ = ("auth", "module_id", "note")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    auth: OperatorAuth
    module_id: str
    note: str
    def __init__(self, auth: _Optional[_Union[OperatorAuth, _Mapping]] = ..., module_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ApproveModuleResponse(_message.Message):
    __slots__ = ("module", "countersignature")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    COUNTERSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    module: ModuleSummary
    countersignature: Countersignature
    def __init__(self, module: _Optional[_Union[ModuleSummary, _Mapping]] = ..., countersignature: _Optional[_Union[Countersignature, _Mapping]] = ...) -> None: ...

class RejectModuleRequest(_message.Message):
    __slots__ = ("auth", "module_id", "reason")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    auth: OperatorAuth
    module_id: str
    reason: str
    def __init__(self, auth: _Optional[_Union[OperatorAuth, _Mapping]] = ..., module_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RejectModuleResponse(_message.Message):
    __slots__ = ("module",)
    MODULE_FIELD_NUMBER: _ClassVar[int]
    module: ModuleSummary
    def __init__(self, module: _Optional[_Union[ModuleSummary, _Mapping]] = ...) -> None: ...

class RevokeModuleRequest(_message.Message):
    __slots__ = ("auth", "module_id", "reason")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    auth: OperatorAuth
    module_id: str
    reason: str
    def __init__(self, auth: _Optional[_Union[OperatorAuth, _Mapping]] = ..., module_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeModuleResponse(_message.Message):
    __slots__ = ("module",)
    MODULE_FIELD_NUMBER: _ClassVar[int]
    module: ModuleSummary
    def __init__(self, module: _Optional[_Union[ModuleSummary, _Mapping]] = ...) -> None: ...

class AuditLogRequest(_message.Message):
    __slots__ = ("auth", "after_seq", "limit")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    auth: OperatorAuth
    after_seq: int
    limit: int
    def __init__(self, auth: _Optional[_Union[OperatorAuth, _Mapping]] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditLogResponse(_message.Message):
    __slots__ = ("entries", "more")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    more: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class ProbeSummary(_message.Message):
    __slots__ = ("status", "reason", "probe_set_sha256", "probes", "pred_min", "pred_max", "pred_mean", "pred_std", "outside_share", "computed_at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROBE_SET_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    PRED_MIN_FIELD_NUMBER: _ClassVar[int]
    PRED_MAX_FIELD_NUMBER: _ClassVar[int]
    PRED_MEAN_FIELD_NUMBER: _ClassVar[int]
    PRED_STD_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_SHARE_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_AT_FIELD_NUMBER: _ClassVar[int]
    status: str
    reason: str
    probe_set_sha256: str
    probes: int
    pred_min: float
    pred_max: float
    pred_mean: float
    pred_std: float
    outside_share: float
    computed_at: str
    def __init__(self, status: _Optional[str] = ..., reason: _Optional[str] = ..., probe_set_sha256: _Optional[str] = ..., probes: _Optional[int] = ..., pred_min: _Optional[float] = ..., pred_max: _Optional[float] = ..., pred_mean: _Optional[float] = ..., pred_std: _Optional[float] = ..., outside_share: _Optional[float] = ..., computed_at: _Optional[str] = ...) -> None: ...

class ModuleFingerprint(_message.Message):
    __slots__ = ("module_id", "seq", "probe_set_sha256", "probes", "predictions", "embedding_dims", "embedding", "summary")
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBE_SET_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIMS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    module_id: str
    seq: int
    probe_set_sha256: str
    probes: int
    predictions: bytes
    embedding_dims: int
    embedding: bytes
    summary: ProbeSummary
    def __init__(self, module_id: _Optional[str] = ..., seq: _Optional[int] = ..., probe_set_sha256: _Optional[str] = ..., probes: _Optional[int] = ..., predictions: _Optional[bytes] = ..., embedding_dims: _Optional[int] = ..., embedding: _Optional[bytes] = ..., summary: _Optional[_Union[ProbeSummary, _Mapping]] = ...) -> None: ...

class GetProbeSetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetProbeSetResponse(_message.Message):
    __slots__ = ("probe_set_sha256", "probe_set_name", "probe_set_json")
    PROBE_SET_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROBE_SET_NAME_FIELD_NUMBER: _ClassVar[int]
    PROBE_SET_JSON_FIELD_NUMBER: _ClassVar[int]
    probe_set_sha256: str
    probe_set_name: str
    probe_set_json: bytes
    def __init__(self, probe_set_sha256: _Optional[str] = ..., probe_set_name: _Optional[str] = ..., probe_set_json: _Optional[bytes] = ...) -> None: ...

class ListFingerprintsRequest(_message.Message):
    __slots__ = ("after_seq", "page_size")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    page_size: int
    def __init__(self, after_seq: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListFingerprintsResponse(_message.Message):
    __slots__ = ("fingerprints", "more", "probe_set_sha256")
    FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    PROBE_SET_SHA256_FIELD_NUMBER: _ClassVar[int]
    fingerprints: _containers.RepeatedCompositeFieldContainer[ModuleFingerprint]
    more: bool
    probe_set_sha256: str
    def __init__(self, fingerprints: _Optional[_Iterable[_Union[ModuleFingerprint, _Mapping]]] = ..., more: _Optional[bool] = ..., probe_set_sha256: _Optional[str] = ...) -> None: ...
