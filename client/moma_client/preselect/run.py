"""Pre-selection against a hub: list, sync fingerprints, rank locally, fetch the top K.

Requests sent (the privacy test records them): ``GetHubInfo``; ``ListModules`` (backbone,
kind); ``GetProbeSet`` and ``ListFingerprints`` (a sync cursor); ``GetCard`` and ``Download``
for the reference encoder (the candidates' common base, when it is a hub module) and for the
top K modules only. The owner's structures and labels are read only by the local ranking.

The task exclusion (never compose a task from modules trained on it) uses the unsigned listing
to skip candidates before ranking and the signed card again before any download, so the
task's name never leaves the machine either.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moma.amc.leakage import same_task
from moma.backbones.base import Backbone, BackboneModel, Graph
from moma.errors import MomaError
from moma.graphs.cache import featurize
from moma.modules.loading import model_from_module
from moma.training.loop import embed_graphs
from moma_client.hub.cache import Fetched, ModuleCache
from moma_client.hub.client import HubClient
from moma_client.hub.fingerprints import FingerprintCache
from moma_client.preselect import DEFAULT_TOP_K
from moma_client.preselect.ranking import (
    DEFAULT_RANKER,
    RANKERS,
    fit_scores,
    probe_weights,
    rank_modules,
    transferred,
)

REPORTED_RANKS = 200


@dataclass
class Preselection:
    """What pre-selection chose, why, and what it cost."""

    folders: list[Path] = field(default_factory=list)
    fetched: list[Fetched] = field(default_factory=list)
    ranking: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def downloads(self) -> int:
        return sum(1 for f in self.fetched if not f.from_cache)

    @property
    def downloaded_bytes(self) -> int:
        return sum(f.downloaded_bytes for f in self.fetched)


def _reference_model(client: HubClient, cache: ModuleCache, backbone: Backbone,
                     bases: Counter[str], listed_ids: Sequence[str]
                     ) -> tuple[BackboneModel, str, Fetched | None]:
    """The encoder that ties the owner's structures to probes: the most common base of the
    candidates (the backbone's pretrained weights, or a hub module fetched and verified), else
    the first candidate."""
    for base, _count in bases.most_common():
        pretrained = backbone.pretrained_base()
        if pretrained is not None and pretrained[1] == base:
            model = backbone.build()
            model.load_state_dict(pretrained[0], strict=True)
            return model.eval(), base, None
        try:
            hub_card = client.get_card(base)
        except MomaError:
            continue  # not on this hub (or not approved): try the next base
        if hub_card.card.kind != "full" or hub_card.card.backbone != backbone.name:
            continue
        fetched = cache.fetch(client, base, expected=hub_card.record)
        return model_from_module(backbone, fetched.module, [cache.root]), base, fetched
    first = listed_ids[0]
    hub_card = client.get_card(first)
    fetched = cache.fetch(client, first, expected=hub_card.record)
    return model_from_module(backbone, fetched.module, [cache.root]), first, fetched


def _fetch_in_order(client: HubClient, cache: ModuleCache, ordered: Sequence[str], top_k: int,
                    backbone: Backbone, kind: str, exclude_task: str | None,
                    result: Preselection) -> None:
    """Fetch the first ``top_k`` of ``ordered`` whose signed card allows it (the signed card
    decides, then the download)."""
    for module_id in ordered:
        if len(result.folders) >= top_k:
            break
        hub_card = client.get_card(module_id)
        card = hub_card.card
        if card.backbone != backbone.name or card.kind != kind:
            result.skipped.append((module_id, f"signed card is a {card.kind} {card.backbone} "
                                   "module"))
            continue
        if exclude_task and same_task(card.task, exclude_task):
            result.skipped.append((module_id, f"trained on {card.task}, the task being "
                                   "composed for"))
            continue
        fetched = cache.fetch(client, module_id, expected=hub_card.record)
        result.fetched.append(fetched)
        result.folders.append(fetched.path)


def _every_candidate(client: HubClient, cache: ModuleCache, candidates: Sequence[str],
                     listed: int, top_k: int, backbone: Backbone, kind: str,
                     exclude_task: str | None, t0: float) -> Preselection:
    """At most ``top_k`` candidates: nothing to rank, every one is fetched (no fingerprint or
    probe request is made, so a hub without a probe set serves this case too)."""
    result = Preselection()
    tick = time.perf_counter()
    _fetch_in_order(client, cache, candidates, top_k, backbone, kind, exclude_task, result)
    total = time.perf_counter() - t0
    result.report = {
        "top_k": top_k, "listed": listed, "candidates": len(candidates), "ranked": 0,
        "note": f"{len(candidates)} candidates, not more than --preselect {top_k}: every "
                "one fetched, nothing ranked",
        "selected": [f.module.module_id for f in result.fetched],
        "downloads": result.downloads, "downloaded_bytes": result.downloaded_bytes,
        "skipped": [{"module_id": m, "why": w} for m, w in result.skipped],
        "timings": {"fetch_s": time.perf_counter() - tick, "total_s": total}, "ranking": []}
    return result


def preselect(client: HubClient, cache: ModuleCache, fingerprints: FingerprintCache,
              backbone: Backbone, *, kind: str, graphs: Sequence[Graph], targets: np.ndarray,
              top_k: int = DEFAULT_TOP_K, exclude_task: str | None = None,
              refine: int = 0, ranker: str = DEFAULT_RANKER) -> Preselection:
    """Rank every approved ``backbone``/``kind`` module on the hub and fetch the top ``top_k``.

    ``graphs``/``targets``: the owner's training split (never sent anywhere). ``ranker``: one
    of :data:`moma_client.preselect.ranking.RANKERS` (``refine`` > 0: the older refinement)."""
    if ranker not in RANKERS:
        raise MomaError(f"unknown ranker {ranker!r}; choose one of " + ", ".join(RANKERS))
    if top_k < 1:
        raise MomaError(f"--preselect {top_k}: pre-select at least 1 module (or 'none')")
    result = Preselection()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    listed = [s for s in client.list_modules(backbone=backbone.name, kind=kind,
                                             states=("approved",))]
    t["list_s"] = time.perf_counter() - t0
    candidates = [s for s in listed if not (exclude_task and same_task(s.task, exclude_task))]
    if not candidates:
        raise MomaError(f"hub {client.hub_id} offers no approved {kind} {backbone.name} modules"
                        + (f" other than ones trained on {exclude_task}" if exclude_task else ""))
    if len(candidates) <= top_k:
        return _every_candidate(client, cache, [s.module_id for s in candidates], len(listed),
                                top_k, backbone, kind, exclude_task, t0)
    t1 = time.perf_counter()
    probe_set = fingerprints.probe_set(client)
    table, sync = fingerprints.sync(client, len(probe_set))
    t["sync_s"] = time.perf_counter() - t1
    index = table.index()
    ranked_ids = [s.module_id for s in candidates if s.module_id in index]
    unranked = [s.module_id for s in candidates if s.module_id not in index]
    t2 = time.perf_counter()
    bases = Counter(s.base_sha256 for s in candidates)
    model, reference, ref_fetch = _reference_model(client, cache, backbone, bases,
                                                   [s.module_id for s in candidates])
    t["reference_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    probe_graphs = featurize(backbone.featurizer(), probe_set.items(), cache=True)
    if probe_graphs.rejected:
        raise MomaError(f"the probe set's {probe_graphs.rejected[0].id} does not "
                        f"featurize here ({probe_graphs.rejected[0].reason})")
    owner = embed_graphs(backbone, model, list(graphs))
    probes = embed_graphs(backbone, model, probe_graphs.graphs)
    t["encode_s"] = time.perf_counter() - t3
    t4 = time.perf_counter()
    rows = np.array([index[m] for m in ranked_ids], dtype=np.int64)
    a = probe_weights(owner, probes)
    y = np.asarray(targets, dtype=np.float64)
    preds, embs = table.predictions[rows], table.embedding[rows]
    if refine:
        order = rank_modules(a, preds, embs, y, refine=refine).order
    else:
        order = RANKERS[ranker](a, preds, embs, y)
    r2 = fit_scores(transferred(a, preds)[0], y)
    t["rank_s"] = time.perf_counter() - t4
    ordered = [ranked_ids[i] for i in order]
    t5 = time.perf_counter()
    _fetch_in_order(client, cache, ordered, top_k, backbone, kind, exclude_task, result)
    t["fetch_s"] = time.perf_counter() - t5
    if ref_fetch is not None and not ref_fetch.from_cache:
        result.fetched.append(ref_fetch)  # counted in what moved, not a candidate
    by_row = {ranked_ids[i]: i for i in range(len(ranked_ids))}
    task_of = {s.module_id: s.task for s in candidates}
    chosen = {f.module.module_id for f in result.fetched}
    result.ranking = [
        {"rank": r + 1, "module_id": m, "task": task_of.get(m, ""),
         "r2": float(r2[by_row[m]]), "selected": m in chosen}
        for r, m in enumerate(ordered[:max(REPORTED_RANKS, top_k)])]
    t["total_s"] = time.perf_counter() - t0
    result.report = {
        "top_k": top_k, "listed": len(listed), "candidates": len(candidates),
        "ranked": len(ranked_ids), "without_fingerprint": len(unranked),
        "probe_set": {"name": probe_set.name, "sha256": probe_set.sha256,
                      "probes": len(probe_set)},
        "reference_encoder": reference, "ranker": "refine" if refine else ranker,
        "fingerprints": {"cached": len(table.module_ids), "new": sync.new,
                         "requests": sync.requests, "received_bytes": sync.received_bytes,
                         "cache_bytes": table.nbytes},
        "selected": [f.module.module_id for f in result.fetched
                     if f.module.module_id in set(ordered[:len(ordered)])][:top_k],
        "downloads": sum(1 for f in result.fetched if not f.from_cache),
        "downloaded_bytes": sum(f.downloaded_bytes for f in result.fetched),
        "skipped": [{"module_id": m, "why": w} for m, w in result.skipped],
        "timings": t, "ranking": result.ranking}
    return result


__all__ = ["DEFAULT_TOP_K", "Preselection", "preselect"]
