"""A client of one hub: its pinned identity, listings and verified cards.

Everything the hub says about a module is checked before it is used: the contributor's
signature over the manifest (which binds the card, the module's sha256 and size), and the
hub's countersignature with the *pinned* hub key (see :mod:`moma_client.hub.pinning`).
Listings are unsigned, so they only choose what to ask for; decisions (backbone, kind, task)
are re-made from the signed card.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.json_format import MessageToDict

from moma.errors import MomaError, TrustError
from moma.modules.card import ModuleCard, is_sha256
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.countersignature import Countersignature, verify_countersignature
from moma.trust.keys import key_id, public_key_from_raw
from moma.trust.manifest import Manifest, SignedManifest, verify_manifest_signature
from moma_client.hub.connection import Transport, call, open_channel
from moma_client.hub.pinning import pin_hub_key

STATE_NAMES = {"pending": hub_pb2.MODULE_STATE_PENDING,
               "approved": hub_pb2.MODULE_STATE_APPROVED,
               "rejected": hub_pb2.MODULE_STATE_REJECTED,
               "revoked": hub_pb2.MODULE_STATE_REVOKED}


def state_name(state: int) -> str:
    """``MODULE_STATE_APPROVED`` -> ``approved``."""
    return hub_pb2.ModuleState.Name(state).removeprefix("MODULE_STATE_").lower()


def summary_dict(summary: hub_pb2.ModuleSummary) -> dict[str, Any]:
    """A listing entry as plain JSON (state as a word)."""
    out = MessageToDict(summary, preserving_proto_field_name=True,
                        always_print_fields_with_no_presence=True)
    out["state"] = state_name(summary.state)
    out["size"] = int(summary.size)
    return out


def to_signed(message: hub_pb2.SignedManifest) -> SignedManifest:
    return SignedManifest(bytes(message.manifest), bytes(message.signature))


def to_countersignature(message: hub_pb2.Countersignature) -> Countersignature:
    return Countersignature(message.manifest_sha256, message.module_sha256, message.state,
                            message.time, message.hub_key_id, bytes(message.signature))


@dataclass(frozen=True)
class VerifiedRecord:
    """A module's signed statements, checked: who contributed it and that the hub approved it."""

    module_id: str
    manifest: Manifest
    signed: SignedManifest
    contributor_public_key: bytes
    countersignature: Countersignature | None

    @property
    def card(self) -> ModuleCard:
        return ModuleCard.from_json(self.manifest.card, source=f"card of module {self.module_id}")

    def provenance(self, hub_id: str, address: str) -> dict[str, Any]:
        """What to keep beside a cached module so its origin can be re-checked offline."""
        cs = self.countersignature
        return {
            "format": "moma-provenance/1", "hub_id": hub_id, "hub_address": address,
            "manifest": self.signed.manifest_bytes.decode("utf-8"),
            "manifest_signature": self.signed.signature.hex(),
            "contributor_public_key": self.contributor_public_key.hex(),
            "countersignature": None if cs is None else {
                "manifest_sha256": cs.manifest_sha256, "module_sha256": cs.module_sha256,
                "state": cs.state, "time": cs.time, "hub_key_id": cs.hub_key_id,
                "signature": cs.signature.hex()},
        }


def verify_record(module_id: str, signed_pb: hub_pb2.SignedManifest, contributor_raw: bytes,
                  countersignature_pb: hub_pb2.Countersignature | None,
                  hub_key: Ed25519PublicKey, *, require_approved: bool = True) -> VerifiedRecord:
    """Check the contributor signature and (if required) the approval by the pinned hub key."""
    signed = to_signed(signed_pb)
    try:
        contributor = public_key_from_raw(contributor_raw)
    except TrustError as exc:
        raise TrustError(f"module {module_id}: contributor key: {exc}") from None
    manifest = verify_manifest_signature(signed, contributor)
    if manifest.module_sha256 != module_id:
        raise TrustError(f"the hub answered for module {module_id} with a manifest for "
                         f"{manifest.module_sha256}: do not use this hub's answer")
    countersignature = None
    if countersignature_pb is not None and countersignature_pb.signature:
        countersignature = to_countersignature(countersignature_pb)
    if require_approved:
        if countersignature is None:
            raise TrustError(f"module {module_id} carries no hub countersignature (not "
                             "approved): only approved modules can be used")
        verify_countersignature(countersignature, signed, hub_key)
    return VerifiedRecord(module_id, manifest, signed, contributor_raw, countersignature)


@dataclass(frozen=True)
class HubCard:
    """GetCard's answer after verification, plus the hub's (unsigned) listing entry."""

    summary: hub_pb2.ModuleSummary
    record: VerifiedRecord

    @property
    def card(self) -> ModuleCard:
        return self.record.card


class HubClient:
    """One connection to one hub, whose key is pinned before anything else is believed."""

    def __init__(self, transport: Transport, *, hub_key: Ed25519PublicKey | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.channel = open_channel(transport)
        self.stub = hub_pb2_grpc.ModuleServiceStub(self.channel)
        self.info = self.call("GetHubInfo", hub_pb2.GetHubInfoRequest(),
                              f"hub {transport.address}")
        try:
            presented = public_key_from_raw(bytes(self.info.hub_public_key))
        except TrustError as exc:
            raise TrustError(f"hub at {transport.address} sent an invalid key: {exc}") from None
        if self.info.hub_key_id and self.info.hub_key_id != key_id(presented):
            raise TrustError(f"hub at {transport.address} says key id {self.info.hub_key_id} for "
                             f"a key whose id is {key_id(presented)}: do not use this hub")
        self.hub_key = pin_hub_key(transport.address, presented, self.info.hub_id,
                                   expected=hub_key, warn=warn)

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    @property
    def address(self) -> str:
        return self.transport.address

    @property
    def hub_id(self) -> str:
        return str(self.info.hub_id)

    def call(self, method: str, request: Any, what: str) -> Any:
        """A unary ModuleService call; a refusal becomes a one-line :class:`HubError`."""
        return call(getattr(self.stub, method), request, what, self.transport.address)

    def list_modules(self, *, backbone: str = "", base_sha256: str = "", kind: str = "",
                     task: str = "", states: Sequence[str] = ("approved",),
                     page_size: int = 0) -> Iterator[hub_pb2.ModuleSummary]:
        """Every module matching the filters, page after page (the hub's stable order)."""
        unknown = [s for s in states if s not in STATE_NAMES]
        if unknown:
            raise MomaError(f"unknown module state {unknown[0]!r}: use one of "
                            f"{', '.join(STATE_NAMES)}")
        request = hub_pb2.ListModulesRequest(
            backbone=backbone, base_sha256=base_sha256, kind=kind, task=task,
            states=[STATE_NAMES[s] for s in states], page_size=page_size)
        while True:
            page = self.call("ListModules", request, "listing modules")
            yield from page.modules
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def get_card(self, module_id: str, *, require_approved: bool = True) -> HubCard:
        """The module's card, verified (contributor signature; approval by the pinned key)."""
        if not is_sha256(module_id):
            raise MomaError(f"module id {module_id!r} is not a sha256 (64 lowercase hex "
                            "digits): copy it from `moma-client modules list --hub ...`")
        reply = self.call("GetCard", hub_pb2.GetCardRequest(module_id=module_id),
                          f"card of module {module_id}")
        cs = reply.countersignature if reply.HasField("countersignature") else None
        record = verify_record(module_id, reply.signed_manifest,
                               bytes(reply.contributor_public_key), cs, self.hub_key,
                               require_approved=require_approved)
        if reply.card_json:
            try:
                sent = json.loads(bytes(reply.card_json).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                sent = None
            if sent != record.manifest.card:
                raise TrustError(f"module {module_id}: the hub's card differs from the signed "
                                 "card in the manifest: do not use this hub's answer")
        return HubCard(reply.module, record)

    def download_stream(self, module_id: str, offset: int, timeout: float
                        ) -> Iterator[hub_pb2.DownloadResponse]:
        """The raw Download stream (see :mod:`moma_client.hub.cache` for the checks)."""
        stream: Iterator[hub_pb2.DownloadResponse] = self.stub.Download(
            hub_pb2.DownloadRequest(module_id=module_id, offset=offset), timeout=timeout)
        return stream


__all__ = ["STATE_NAMES", "HubCard", "HubClient", "VerifiedRecord", "state_name",
           "summary_dict", "to_countersignature", "to_signed", "verify_record"]
