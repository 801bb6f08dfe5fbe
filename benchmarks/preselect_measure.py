"""The ``measure`` stage of ``benchmarks/preselect_hub.py``: every figure through compose.

Each run is one call of the compose entry point (:func:`moma.api.compose.run`, what
``moma-client compose`` calls), so the numbers include everything a user waits for: loading and
featurizing the task (graph cache shared), AMC, merging, fine-tuning (the paper's settings,
with the guard), calibration and the one read of the test split for the kept model.

``preselect``   compose against the hub with pre-selection (top ``--top-k``): the same
                post-prepare hook as ``moma-client compose --hub ADDR``, with a fresh module and
                fingerprint cache per run so downloads and the fingerprint sync are counted
                from nothing.
``exhaustive``  compose over every approved module of the hub except the task's own (of a
                random ``--exhaustive-cap`` sub-hub, drawn once for all tasks, plus the
                pre-selected ones, when set), fetched and
                verified through the client's module cache (shared between runs; the fetch
                time is reported apart), then handed to compose as module folders. Compared
                with the task's ``preselect`` run: proxy MAE ratio, and the share of the
                exhaustive AMC's weight mass (weights >= 0.05) inside the pre-selected set.
``sizes``       ``preselect`` against each hub named by ``--size-hub`` (``hub``: the full one;
                others built by ``hub --hub-name``), one after the other in one process, for
                compose's wall time against the number of modules measured side by side.

One JSON line per run is appended to ``out/measure.jsonl``; a run already there is skipped, so
the stage resumes. Compose's own output (report.json, module, figures) stays under
``out/measure/<task>/<run>``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moma.amc.leakage import same_task
from moma.api.compose import ComposeHooks, ComposeRequest, run
from moma.backbones.base import Graph
from moma.backbones.registry import get_backbone
from moma.paths import downstream_task_path
from moma_client.hub.cache import ModuleCache
from moma_client.hub.client import HubClient
from moma_client.hub.connection import Transport
from moma_client.hub.fingerprints import FingerprintCache
from moma_client.preselect.run import preselect

HEAVY = 0.05
"""Exhaustive AMC weights at least this large count as the mass pre-selection must find."""


def _request(task: str, out: Path, train_size: int | None,
             candidates: Sequence[Path] = ()) -> ComposeRequest:
    return ComposeRequest(data=str(downstream_task_path(task)), out=out,
                          candidates=list(candidates), split="seed0", seed=0,
                          train_size=train_size)


def _summary(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What a row keeps of compose's report."""
    m = report["metrics"]
    return {"compose_s": seconds, "test_mae": m["test_mae"], "val_mae": m["val_mae"],
            "unit": report["unit"], "train": report["train_size"],
            "ensemble_proxy_mae": report["ensemble_proxy_mae"],
            "kept": report["guard"].get("kept", "composed"),
            "amc_candidates": len(report["candidates"]),
            "timings": report["timings"]}


def compose_preselected(address: str, task: str, folder: Path, top_k: int,
                        train_size: int | None, ranker: str = "approx-amc"
                        ) -> tuple[dict[str, Any], float]:
    """Compose with pre-selection against the hub at ``address``; (report, wall seconds)."""
    shutil.rmtree(folder, ignore_errors=True)
    scratch = folder / "client"
    net = get_backbone("cgcnn")

    def after_prepare(name: str, graphs: Sequence[Graph], y: np.ndarray
                      ) -> tuple[list[Path], dict[str, Any]]:
        with HubClient(Transport(address, insecure=True)) as client:
            chosen = preselect(client, ModuleCache(scratch / "modules"),
                               FingerprintCache(scratch / "fingerprints"), net, kind="full",
                               graphs=graphs, targets=y, top_k=top_k, exclude_task=name,
                               ranker=ranker)
        return chosen.folders, chosen.report

    hooks = ComposeHooks(after_prepare=after_prepare, more_base_dirs=(scratch / "modules",))
    tick = time.perf_counter()
    result = run(_request(task, folder / "compose", train_size), hooks)
    seconds = time.perf_counter() - tick
    shutil.rmtree(scratch / "modules", ignore_errors=True)  # 50 modules each; kept: the report
    return result.report, seconds


def _exhaustive_ids(client: HubClient, task: str, cap: int | None,
                    picked: Sequence[str]) -> list[str]:
    """Every approved module but the task's own; with ``cap``, those of one random ``cap``-module
    sub-hub (drawn once from the whole hub, the same for every task, so the client cache
    serves all tasks) plus the pre-selected ones."""
    listed = sorted((s.module_id, s.task) for s in client.list_modules(backbone="cgcnn",
                                                                       kind="full"))
    keep = {m for m, _ in listed}
    if cap is not None and len(listed) > cap:
        drawn = np.random.default_rng(0).choice(len(listed), cap, replace=False)
        keep = {listed[i][0] for i in drawn} | set(picked)
    return [m for m, t in listed if m in keep and not same_task(t, task)]


def compose_exhaustive(address: str, task: str, folder: Path, cache: ModuleCache,
                       cap: int | None, picked: Sequence[str], train_size: int | None
                       ) -> tuple[dict[str, Any], float, float, int]:
    """Exhaustive compose; (report, compose seconds, fetch seconds, candidates)."""
    shutil.rmtree(folder, ignore_errors=True)
    tick = time.perf_counter()
    with HubClient(Transport(address, insecure=True)) as client:
        ids = _exhaustive_ids(client, task, cap, picked)
        folders = [cache.fetch(client, m).path for m in ids]
    fetch_s = time.perf_counter() - tick
    tick = time.perf_counter()
    result = run(_request(task, folder / "compose", train_size, folders))
    return result.report, time.perf_counter() - tick, fetch_s, len(ids)


def compare(pre: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """Pre-selection against exhaustive AMC on the same training structures."""
    picked = set(pre["preselect"]["selected"])
    weights = {c["module_id"]: float(c["weight"]) for c in full["candidates"]}
    heavy = {m: w for m, w in weights.items() if w >= HEAVY}
    return {"proxy_ratio": pre["ensemble_proxy_mae"] / full["ensemble_proxy_mae"],
            "proxy_mae_preselect": pre["ensemble_proxy_mae"],
            "proxy_mae_exhaustive": full["ensemble_proxy_mae"],
            "heavy": len(heavy),
            "mass_found": sum(w for m, w in heavy.items() if m in picked)
            / max(sum(heavy.values()), 1e-12)}


class Measure:
    """The runs of one ``measure`` call, appended to ``out/measure.jsonl``, resumable."""

    def __init__(self, out: Path, train_size: int | None, top_k: int) -> None:
        self.out, self.train_size, self.top_k = out, train_size, top_k
        self.log = out / "measure.jsonl"
        self.cache = ModuleCache(out / "client" / "modules")

    def done(self, task: str, run_name: str) -> dict[str, Any] | None:
        if not self.log.is_file():
            return None
        rows = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        found = [r for r in rows if r["task"] == task and r["run"] == run_name
                 and r["top_k"] == self.top_k and r["train_size"] == self.train_size]
        return found[-1] if found else None

    def _write(self, row: dict[str, Any]) -> None:
        row = {**row, "top_k": self.top_k, "train_size": self.train_size,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        print(json.dumps(row), flush=True)
        with self.log.open("a") as handle:  # one line per write: appends stay whole
            handle.write(json.dumps(row) + "\n")

    def preselect(self, address: str, task: str, hub_name: str = "hub",
                  run_name: str = "preselect") -> dict[str, Any]:
        row = self.done(task, run_name)
        if row is not None:
            return row
        folder = self.out / "measure" / task / run_name
        report, seconds = compose_preselected(address, task, folder, self.top_k,
                                              self.train_size)
        p = report["preselect"]
        row = {"task": task, "run": run_name, "hub": hub_name,
               "hub_modules": p["listed"], "candidates": p["candidates"],
               "ranked": p.get("ranked", 0), "selected": p["selected"],
               "downloads": p["downloads"], "downloaded_bytes": p["downloaded_bytes"],
               "preselect_timings": p["timings"],
               "fingerprints": p.get("fingerprints"), **_summary(report, seconds)}
        self._write(row)
        return row

    def exhaustive(self, address: str, task: str, cap: int | None) -> dict[str, Any]:
        run_name = "exhaustive" if cap is None else f"exhaustive-cap{cap}"
        row = self.done(task, run_name)
        if row is not None:
            return row
        pre = self.preselect(address, task)
        folder = self.out / "measure" / task / run_name
        report, seconds, fetch_s, n = compose_exhaustive(
            address, task, folder, self.cache, cap, pre["selected"], self.train_size)
        pre_report = json.loads((self.out / "measure" / task / "preselect" / "compose"
                                 / "report.json").read_text())
        row = {"task": task, "run": run_name, "modules": n, "capped": cap is not None,
               "fetch_s": fetch_s, **_summary(report, seconds),
               **compare(pre_report, report)}
        self._write(row)
        return row


__all__ = ["Measure", "compare", "compose_exhaustive", "compose_preselected"]
