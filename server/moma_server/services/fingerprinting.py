"""The hub's probe run: fingerprint a module being stored, review it, keep the result.

Called from the upload path at two points (see :mod:`moma_server.services.uploads`):
:func:`probe_module` after the byte checks, still inside the checks that discard a session on
failure (a refused module is never stored), and :func:`record_probe` inside the transaction
that stores the module, so a module and its fingerprint commit together or not at all.

The probe graphs are built once per backbone per process. A run costs one forward pass over the
probe set (CGCNN about 0.05 s, CHGNet about 0.3 s for 192 probes on one core).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict

from sqlalchemy.orm import Session
from torch import Tensor

from moma.backbones.base import Graph
from moma.backbones.registry import get_backbone
from moma.errors import MomaError
from moma.graphs.cache import featurize
from moma.modules.card import ModuleCard
from moma.modules.loading import model_from_state
from moma.modules.safetensors_check import read_safetensors_bytes
from moma.modules.store import module_schema
from moma.probes.fingerprint import EMBED_DIMS, compute_fingerprint, review
from moma.probes.probe_set import ProbeSet
from moma_server.services.errors import invalid
from moma_server.services.hub import Hub
from moma_server.store.fingerprints import FingerprintRow, add_fingerprint
from moma_server.store.metadata import utc_now

_log = logging.getLogger("moma_server")
MAX_STASHED = 256
"""Reviewed modules waiting for their store transaction (bounded: an upload that fails after
its review leaves one entry, dropped oldest first)."""


class Fingerprinter:
    """The probe set, its graphs per backbone, and reviews waiting to be committed."""

    def __init__(self, probe_set: ProbeSet) -> None:
        self.probe_set = probe_set
        self._graphs: dict[str, list[Graph]] = {}
        self._lock = threading.Lock()
        self._stash: OrderedDict[str, FingerprintRow] = OrderedDict()

    def graphs(self, backbone: str) -> list[Graph]:
        with self._lock:
            if backbone not in self._graphs:
                result = featurize(get_backbone(backbone).featurizer(),
                                   self.probe_set.items(), cache=False)
                if result.rejected:
                    first = result.rejected[0]
                    raise MomaError(f"probe set {self.probe_set.name}: the {backbone} "
                                    f"featurizer refuses {first.id} ({first.reason})")
                self._graphs[backbone] = list(result.graphs)
            return self._graphs[backbone]

    def stash(self, row: FingerprintRow) -> None:
        with self._lock:
            self._stash[row.module_id] = row
            while len(self._stash) > MAX_STASHED:
                self._stash.popitem(last=False)

    def take(self, module_id: str) -> FingerprintRow | None:
        with self._lock:
            return self._stash.pop(module_id, None)


def _base_state(hub: Hub, backbone_name: str, sha: str) -> dict[str, Tensor]:
    backbone = get_backbone(backbone_name)
    pretrained = backbone.pretrained_base()
    if pretrained is not None and pretrained[1] == sha:
        return pretrained[0]
    row = hub.metadata.get_module(sha)
    if row is None or row.kind != "full":
        raise invalid(f"the base {sha} of this adapter module is not a full module on this hub")
    data = b"".join(hub.blobs.iter_range(sha, 0, hub.config.chunk_size))
    return read_safetensors_bytes(data, expected=module_schema(backbone, "full"),
                                  source=f"base module {sha}",
                                  max_bytes=hub.config.max_module_bytes)


def probe_module(hub: Hub, data: bytes | bytearray, card: ModuleCard, module_id: str) -> None:
    """Fingerprint and review a checked module; refuse it (INVALID_ARGUMENT) if degenerate."""
    fingerprinter = hub.probes
    if fingerprinter is None:
        return
    backbone = get_backbone(card.backbone)
    state = read_safetensors_bytes(bytes(data), expected=module_schema(backbone, card.kind),
                                   source=f"module {module_id}",
                                   max_bytes=hub.config.max_module_bytes)
    model = model_from_state(backbone, card, state,
                             lambda sha: _base_state(hub, card.backbone, sha))
    fp = compute_fingerprint(backbone, model, fingerprinter.graphs(card.backbone), card)
    verdict = review(fp, card)
    if verdict.status == "refused":
        raise invalid(f"module {module_id} refused by the hub's probe check: {verdict.reason}")
    fingerprinter.stash(FingerprintRow(
        module_id=module_id, probe_set_sha256=fingerprinter.probe_set.sha256,
        probes=fp.probes, predictions=fp.predictions_bytes(), embedding_dims=EMBED_DIMS,
        embedding=fp.embedding_bytes(), status=verdict.status, reason=verdict.reason,
        summary_json=json.dumps(verdict.summary, sort_keys=True), computed_at=utc_now()))
    if verdict.status != "ok":
        _log.info("module %s flagged by the probe check: %s", module_id, verdict.reason)


def record_probe(hub: Hub, session: Session, module_id: str) -> None:
    """Add the module's reviewed fingerprint to the transaction that stores the module."""
    if hub.probes is None:
        return
    row = hub.probes.take(module_id)
    if row is not None:
        add_fingerprint(session, row)
