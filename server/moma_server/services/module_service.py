"""ModuleService: hub info, listings, cards, downloads and contributions."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.chunks import make_chunk
from moma.trust.manifest import SignedManifest
from moma_server.services import convert
from moma_server.services.errors import HubError, handle_errors, invalid, not_found, precondition
from moma_server.services.fingerprint_service import attach_probe_summary, probe_set_fields
from moma_server.services.hub import Hub
from moma_server.services.request_fields import checked_module_id, checked_states, page_after
from moma_server.services.uploads import Uploads
from moma_server.store.models import ModuleRow

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class ModuleService(hub_pb2_grpc.ModuleServiceServicer):
    """The public service; see ``protos/moma/hub/v1/hub.proto`` for each RPC's contract."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.uploads = Uploads(hub)

    @handle_errors
    def GetHubInfo(self, request: hub_pb2.GetHubInfoRequest,
                   context: grpc.ServicerContext) -> hub_pb2.GetHubInfoResponse:
        cfg = self.hub.config
        return hub_pb2.GetHubInfoResponse(
            hub_id=cfg.hub_id, hub_public_key=cfg.hub_public_raw, hub_key_id=cfg.hub_key_id,
            max_module_size=cfg.max_module_bytes, chunk_size=cfg.chunk_size,
            manifest_tolerance_s=cfg.tolerance_s, **probe_set_fields(self.hub))

    @handle_errors
    def ListModules(self, request: hub_pb2.ListModulesRequest,
                    context: grpc.ServicerContext) -> hub_pb2.ListModulesResponse:
        states = checked_states(list(request.states))
        if request.page_size < 0:
            raise invalid(f"page_size {request.page_size} is negative: use 0 for the default")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = page_after(request.page_token)
        rows, more = self.hub.metadata.list_modules(
            backbone=request.backbone, base_sha256=request.base_sha256, kind=request.kind,
            task=request.task, states=states, after_row_id=after, limit=size)
        labs = self.hub.metadata.lab_names([r.contributor_key_id for r in rows])
        return hub_pb2.ListModulesResponse(
            modules=[convert.summary(r, labs.get(r.contributor_key_id, "")) for r in rows],
            next_page_token=str(rows[-1].row_id) if more and rows else "")

    def _module(self, module_id: str) -> ModuleRow:
        row = self.hub.metadata.get_module(checked_module_id(module_id))
        if row is None:
            raise not_found(f"no module {module_id} on this hub: check the id (the sha256 of "
                            "module.safetensors) with ListModules")
        return row

    def _public_key(self, row: ModuleRow) -> bytes:
        key = self.hub.metadata.get_key(row.contributor_key_id)
        return key.public_key if key is not None else b""

    @handle_errors
    def GetCard(self, request: hub_pb2.GetCardRequest,
                context: grpc.ServicerContext) -> hub_pb2.GetCardResponse:
        row = self._module(request.module_id)
        labs = self.hub.metadata.lab_names([row.contributor_key_id])
        response = hub_pb2.GetCardResponse(
            module=convert.summary(row, labs.get(row.contributor_key_id, "")),
            card_json=row.card_json.encode("utf-8"),
            signed_manifest=convert.signed_manifest(row),
            contributor_public_key=self._public_key(row))
        cs = convert.countersignature(row)
        if cs is not None:
            response.countersignature.CopyFrom(cs)
        attach_probe_summary(self.hub, response, row.module_id)
        return response

    @handle_errors
    def Download(self, request: hub_pb2.DownloadRequest,
                 context: grpc.ServicerContext) -> Iterator[hub_pb2.DownloadResponse]:
        row = self._module(request.module_id)
        if row.state != "approved":
            raise precondition(f"module {row.module_id} is {row.state}, not approved: only "
                               "approved modules are served")
        if request.offset < 0 or request.offset > row.size:
            raise HubError(grpc.StatusCode.OUT_OF_RANGE,
                           f"offset {request.offset} is outside module {row.module_id} of "
                           f"{row.size} bytes: resume from the size of the partial file")
        header = hub_pb2.DownloadHeader(
            module_id=row.module_id, size=row.size, offset=request.offset,
            signed_manifest=convert.signed_manifest(row),
            contributor_public_key=self._public_key(row))
        cs = convert.countersignature(row)
        if cs is not None:
            header.countersignature.CopyFrom(cs)
        yield hub_pb2.DownloadResponse(header=header)
        offset = request.offset
        for piece in self.hub.blobs.iter_range(row.module_id, offset,
                                               self.hub.config.chunk_size):
            yield hub_pb2.DownloadResponse(chunk=make_chunk(offset, piece))
            offset += len(piece)
            if not context.is_active():
                return

    @handle_errors
    def StartUpload(self, request: hub_pb2.StartUploadRequest,
                    context: grpc.ServicerContext) -> hub_pb2.StartUploadResponse:
        if not request.HasField("signed_manifest"):
            raise invalid("StartUpload needs signed_manifest: sign a manifest for this hub")
        signed = SignedManifest(request.signed_manifest.manifest,
                                request.signed_manifest.signature)
        row = self.uploads.start(signed)
        return hub_pb2.StartUploadResponse(upload_id=row.upload_id,
                                           chunk_size=self.hub.config.chunk_size,
                                           expires_at=row.expires_at)

    @handle_errors
    def Upload(self, request_iterator: Iterator[hub_pb2.UploadRequest],
               context: grpc.ServicerContext) -> hub_pb2.UploadResponse:
        return hub_pb2.UploadResponse(offset=self.uploads.append(iter(request_iterator)))

    @handle_errors
    def GetUploadStatus(self, request: hub_pb2.GetUploadStatusRequest,
                        context: grpc.ServicerContext) -> hub_pb2.GetUploadStatusResponse:
        row, held = self.uploads.status(request.upload_id)
        return hub_pb2.GetUploadStatusResponse(offset=held, size=row.size,
                                               module_id=row.module_id,
                                               expires_at=row.expires_at)

    @handle_errors
    def FinishUpload(self, request: hub_pb2.FinishUploadRequest,
                     context: grpc.ServicerContext) -> hub_pb2.FinishUploadResponse:
        row = self.uploads.finish(request.upload_id)
        labs = self.hub.metadata.lab_names([row.contributor_key_id])
        return hub_pb2.FinishUploadResponse(
            module=convert.summary(row, labs.get(row.contributor_key_id, "")))
