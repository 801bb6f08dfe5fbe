"""The privacy invariant (DESIGN.md sections 7 and 9): composing against a hub sends only
listing, card and download requests (plus, with pre-selection, the probe set and fingerprint
sync), and none of them carries anything of the private data set.

A real ``compose --hub`` runs against the real hub with a recording interceptor on its
channel, which keeps the serialized bytes of every request message. The test then searches
those bytes for every label of the data set (float32 and float64, both byte orders, and as
decimal text at several precisions), every lattice and atomic coordinate (fractional and
Cartesian), every formula and element list, every record id, and the task's name.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from moma.proto.hub.v1 import hub_pb2
from moma_client.hub.connection import observe_channels
from tests.integration.conftest import (
    FAST_COMPOSE,
    TASK,
    TASK_PATH,
    World,
    clear_module_cache,
    cli,
)
from tests.integration.hubenv import Recorder

ALLOWED = {"GetHubInfo", "ListModules", "GetCard", "Download"}


def float_patterns(value: float, *, binary: bool = True) -> set[bytes]:
    """How a number could travel: IEEE bytes (both widths, both orders) and decimal text."""
    out: set[bytes] = set()
    # A number with a very short binary form (0, 0.5, 0.25, ...) is a structural constant of
    # crystals, not evidence of this data set; its decimal forms are still searched.
    if binary and not float(value * 8).is_integer():
        for fmt in ("<f", ">f", "<d", ">d"):
            out.add(struct.pack(fmt, value))
    for text in (repr(value), repr(float(np.float32(value))), f"{value:g}", f"{value:.2f}",
                 f"{value:.3f}", f"{value:.4f}", f"{value:.6f}", f"{value:.8f}"):
        if any(c.isdigit() for c in text) and len(text) >= 4:
            out.add(text.encode())
    return out


def private_patterns(raw: dict[str, Any]) -> dict[bytes, str]:
    """Every byte pattern that would reveal the data set, with a description of its origin."""
    patterns: dict[bytes, str] = {}
    for record in raw["records"]:
        rid = str(record["id"])
        patterns[rid.encode()] = f"record id {rid}"
        for p in float_patterns(float(record["target"])):
            patterns[p] = f"label of {rid}"
        s = record["structure"]
        structure = Structure(s["lattice"], s["species"], s["frac_coords"])
        numbers = [*np.ravel(structure.lattice.matrix), *structure.lattice.abc,
                   *structure.lattice.angles, *np.ravel(structure.frac_coords),
                   *np.ravel(structure.cart_coords)]
        for value in numbers:
            for p in float_patterns(float(value)):
                patterns.setdefault(p, f"coordinate of {rid}")
        composition = structure.composition
        elements = sorted(el.symbol for el in composition.elements)
        for text in (composition.reduced_formula, composition.formula,
                     composition.formula.replace(" ", ""), composition.alphabetical_formula,
                     ",".join(elements), " ".join(elements), "".join(elements),
                     json.dumps(elements)):
            if len(text) >= 3:
                patterns.setdefault(text.encode(), f"formula/elements of {rid}")
    patterns[TASK.encode()] = "the task name"
    patterns[Path(TASK_PATH).name.encode()] = "the data file name"
    return patterns


ALLOWED_PRESELECT = ALLOWED | {"GetProbeSet", "ListFingerprints"}


def check_requests(recorder: Recorder, raw: dict[str, Any], allowed: set[str]) -> None:
    """Only ``allowed`` methods, every field one the client can state without reading its
    data, and none of the data set's byte patterns anywhere in what was sent."""
    methods = recorder.methods()
    assert set(methods) <= allowed, methods
    assert all(c.method.startswith(("/moma.hub.v1.ModuleService/",
                                    "/moma.hub.v1.FingerprintService/"))
               for c in recorder.calls)
    assert all(not c.metadata for c in recorder.calls)  # no headers added by the client
    offered = set()
    for call in recorder.calls:
        name = call.method.rsplit("/", 1)[-1]
        if name == "ListModules":
            listing = hub_pb2.ListModulesRequest.FromString(call.request)
            assert (listing.backbone, listing.kind, listing.task, listing.base_sha256) == (
                "cgcnn", "full", "", "")
            assert list(listing.states) == [hub_pb2.MODULE_STATE_APPROVED]
        elif name == "GetCard":
            offered.add(hub_pb2.GetCardRequest.FromString(call.request).module_id)
        elif name == "Download":
            download = hub_pb2.DownloadRequest.FromString(call.request)
            assert download.module_id in offered and download.offset == 0
        elif name == "ListFingerprints":  # a sync cursor and a page size, nothing else
            page = hub_pb2.ListFingerprintsRequest.FromString(call.request)
            assert page.SerializeToString() == call.request
            assert page.after_seq >= 0 and 0 <= page.page_size <= 1000
            assert {f.name for f, _ in page.ListFields()} <= {"after_seq", "page_size"}
        else:
            assert call.request == b""  # GetHubInfo and GetProbeSet requests have no fields

    sent = [call.request for call in recorder.calls]
    patterns = private_patterns(raw)
    assert len(patterns) > 10_000  # labels, coordinates, formulas of 633 structures
    leaks = [(origin, pattern) for pattern, origin in patterns.items()
             if any(pattern in request for request in sent)]
    assert not leaks, leaks[:5]
    total = sum(map(len, sent))
    print(f"{len(recorder.calls)} requests, {total} bytes, {len(patterns)} patterns searched")


def _recorded_compose(world: World, tmp_path: Path, *extra: str
                      ) -> tuple[dict[str, Any], Recorder]:
    """``compose --hub`` on the world's hub with a recorder on its channels."""
    recorder = Recorder()
    with observe_channels(recorder):
        code, stdout, err = cli("compose", "--data", TASK_PATH, *world.hub_args, "--out",
                                str(tmp_path / "out"), *extra, *FAST_COMPOSE, "--json")
    assert code == 0, err
    return json.loads(stdout), recorder


def test_compose_sends_nothing_of_the_private_data(world: World, tmp_path: Path,
                                                   jarvis_2d_eform: dict[str, Any]) -> None:
    clear_module_cache()  # so the compose downloads: Download requests are checked too
    report, recorder = _recorded_compose(world, tmp_path, "--preselect", "none")
    assert report["task"] == TASK and np.isfinite(report["metrics"]["test_mae"])
    assert "preselect" not in report
    assert {"GetHubInfo", "ListModules", "GetCard", "Download"} <= set(recorder.methods())
    check_requests(recorder, jarvis_2d_eform, ALLOWED)


def test_preselection_sends_nothing_of_the_private_data(world: World, tmp_path: Path,
                                                         jarvis_2d_eform: dict[str, Any]
                                                         ) -> None:
    """``compose --hub --preselect 2``: the hub's three usable modules are ranked locally
    from fingerprints and the owner's training split; two are downloaded and composed."""
    clear_module_cache()
    report, recorder = _recorded_compose(world, tmp_path, "--preselect", "2")
    pre = report["preselect"]
    usable = {world.ids[r] for r in ("base", "lab_a", "lab_b")}
    assert pre["candidates"] == pre["ranked"] == 3  # never the same-task or pending module
    assert {e["module_id"] for e in pre["ranking"]} == usable
    assert len(pre["selected"]) == 2 and set(pre["selected"]) <= usable
    assert [e["module_id"] for e in pre["ranking"] if e["selected"]] == pre["selected"]
    # AMC ran on the two pre-selected modules only
    assert {c["module_id"] for c in report["candidates"]} == set(pre["selected"])
    assert pre["downloads"] <= 3 and pre["downloaded_bytes"] > 0
    assert pre["timings"]["total_s"] > 0 and pre["fingerprints"]["cache_bytes"] > 0
    methods = set(recorder.methods())
    assert {"GetProbeSet", "ListFingerprints", "ListModules", "GetCard", "Download"} <= methods
    check_requests(recorder, jarvis_2d_eform, ALLOWED_PRESELECT)


def test_few_candidates_are_all_fetched_without_ranking(world: World, tmp_path: Path) -> None:
    """With no more candidates than K there is nothing to rank: no fingerprint requests."""
    report, recorder = _recorded_compose(world, tmp_path)
    pre = report["preselect"]
    assert (pre["candidates"], pre["ranked"], len(pre["selected"])) == (3, 0, 3)
    assert "not more than --preselect 50" in pre["note"]
    assert set(recorder.methods()) <= ALLOWED
