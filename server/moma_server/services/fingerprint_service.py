"""FingerprintService: the public probe set and every stored module's fingerprint, paged."""

from __future__ import annotations

import json

import grpc

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma_server.services.errors import HubError, handle_errors, invalid
from moma_server.services.hub import Hub
from moma_server.store.fingerprints import FingerprintRow, fingerprint_of, fingerprints_after

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
"""1,000 fingerprints of 192 probes are about 2.4 MB: under the 4 MiB message limit."""


def probe_summary(row: FingerprintRow) -> hub_pb2.ProbeSummary:
    try:
        values = json.loads(row.summary_json)
    except ValueError:
        values = {}
    return hub_pb2.ProbeSummary(
        status=row.status, reason=row.reason, probe_set_sha256=row.probe_set_sha256,
        probes=row.probes, pred_min=values.get("pred_min", 0.0),
        pred_max=values.get("pred_max", 0.0), pred_mean=values.get("pred_mean", 0.0),
        pred_std=values.get("pred_std", 0.0), outside_share=values.get("outside_share", 0.0),
        computed_at=row.computed_at)


def attach_probe_summary(hub: Hub, response: hub_pb2.GetCardResponse, module_id: str) -> None:
    """Put the module's probe review into a GetCard answer (nothing if none ran)."""
    row = fingerprint_of(hub.metadata, module_id)
    if row is not None:
        response.probe.CopyFrom(probe_summary(row))


def probe_set_fields(hub: Hub) -> dict[str, str]:
    """GetHubInfo's probe-set fields (empty when the hub runs no probes)."""
    if hub.probes is None:
        return {}
    return {"probe_set_sha256": hub.probes.probe_set.sha256,
            "probe_set_name": hub.probes.probe_set.name}


class FingerprintService(hub_pb2_grpc.FingerprintServiceServicer):
    """See ``protos/moma/hub/v1/hub.proto`` for each RPC's contract."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _probes(self) -> None:
        if self.hub.probes is None:
            raise HubError(grpc.StatusCode.UNIMPLEMENTED, "this hub runs no probe set, so it "
                           "has no fingerprints: compose with --preselect none")

    @handle_errors
    def GetProbeSet(self, request: hub_pb2.GetProbeSetRequest,
                    context: grpc.ServicerContext) -> hub_pb2.GetProbeSetResponse:
        self._probes()
        assert self.hub.probes is not None
        probe_set = self.hub.probes.probe_set
        return hub_pb2.GetProbeSetResponse(probe_set_sha256=probe_set.sha256,
                                           probe_set_name=probe_set.name,
                                           probe_set_json=probe_set.canonical)

    @handle_errors
    def ListFingerprints(self, request: hub_pb2.ListFingerprintsRequest,
                         context: grpc.ServicerContext) -> hub_pb2.ListFingerprintsResponse:
        self._probes()
        assert self.hub.probes is not None
        if request.after_seq < 0 or request.page_size < 0:
            raise invalid("after_seq and page_size must not be negative: start from 0")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        rows, more = fingerprints_after(self.hub.metadata, request.after_seq, size)
        return hub_pb2.ListFingerprintsResponse(
            fingerprints=[hub_pb2.ModuleFingerprint(
                module_id=r.module_id, seq=r.seq, probe_set_sha256=r.probe_set_sha256,
                probes=r.probes, predictions=r.predictions, embedding_dims=r.embedding_dims,
                embedding=r.embedding, summary=probe_summary(r)) for r in rows],
            more=more, probe_set_sha256=self.hub.probes.probe_set.sha256)
