"""Hub benchmark section (c): concurrent clients, every byte checked."""


from __future__ import annotations

import hashlib
import random
import statistics
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub_bare import db_name, mbs, ms, pct, timed
from hub_harness import Lab, ModuleFactory, approve, bench_hub, contribute, enroll, fetch_verified

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc

# -- (c) concurrent clients -----------------------------------------------------------------------


def section_concurrent(db: str, workdir: Path, factory: ModuleFactory, clients: int,
                       per_client: int, random_downloads: int, budget_s: float
                       ) -> dict[str, Any]:
    print(f"\n== (c) {clients} concurrent clients, {per_client} CHGNet full modules each "
          f"[{db_name(db)}] ==", flush=True)
    modules = [[factory.chgnet_full(10_000 + c * 100 + k) for k in range(per_client)]
               for c in range(clients)]
    expected = {hashlib.sha256(d).hexdigest(): d for group in modules for d, _ in group}
    assert len(expected) == clients * per_client
    approved: list[str] = []
    lock = threading.Lock()
    uploaded = threading.Barrier(clients)
    stats: dict[str, list[float]] = {"upload": [], "approve": [], "download": []}
    bytes_moved = {"up": 0, "down": 0}
    errors: list[str] = []
    corrupt: list[str] = []
    deadline = time.monotonic() + budget_s

    with bench_hub(workdir / "hub-c", db=db) as hub:
        with hub.channel() as channel:
            hub_public = hub_pb2_grpc.ModuleServiceStub(channel).GetHubInfo(
                hub_pb2.GetHubInfoRequest()).hub_public_key
            labs = [Lab.new(f"lab-{c:02d}") for c in range(clients)]
            for lab in labs:
                enroll(hub, channel, lab)
            # warm the CHGNet schema and base digest (not timed)
            stub = hub_pb2_grpc.ModuleServiceStub(channel)
            warm = contribute(stub, labs[0], hub.hub_id, *factory.chgnet_full(999))
            approve(hub, channel, warm)

        def download_check(stub: hub_pb2_grpc.ModuleServiceStub, module_id: str) -> None:
            t, data = timed(lambda: fetch_verified(stub, module_id, hub_public))
            with lock:
                stats["download"].append(t)
                bytes_moved["down"] += len(data)
                if data != expected[module_id]:
                    corrupt.append(module_id)

        def client(c: int) -> None:
            rng = random.Random(c)
            try:
                with hub.channel() as channel:
                    stub = hub_pb2_grpc.ModuleServiceStub(channel)
                    for data, card in modules[c]:
                        if time.monotonic() > deadline:
                            raise TimeoutError("benchmark budget exceeded")
                        t, module_id = timed(lambda: contribute(
                            stub, labs[c], hub.hub_id, data, card))  # noqa: B023
                        t2, _ = timed(lambda: approve(hub, channel, module_id))  # noqa: B023
                        with lock:
                            stats["upload"].append(t)
                            stats["approve"].append(t2)
                            bytes_moved["up"] += len(data)
                            approved.append(module_id)
                            pool = list(approved)
                        for _ in range(random_downloads):
                            download_check(stub, rng.choice(pool))
                    uploaded.wait(timeout=max(1.0, deadline - time.monotonic()))
                    for data, _ in modules[(c + 1) % clients]:
                        download_check(stub, hashlib.sha256(data).hexdigest())
            except Exception as exc:  # recorded and reported: a lost module fails the run
                with lock:
                    errors.append(f"client {c}: {type(exc).__name__}: {exc}"[:300])
                uploaded.abort()

        wall, _ = timed(lambda: list(futures.ThreadPoolExecutor(clients).map(
            client, range(clients))))

        # verification of everything the hub holds against what was sent
        with hub.channel() as channel:
            stub = hub_pb2_grpc.ModuleServiceStub(channel)
            listed, token = set(), ""
            while True:
                response = stub.ListModules(hub_pb2.ListModulesRequest(
                    page_size=1000, page_token=token), timeout=60)
                listed |= {m.module_id for m in response.modules}
                token = response.next_page_token
                if not token:
                    break
        listed.discard(warm)
        blob_files = {p.parent.name + p.name: p for p in (hub.store / "sha256").glob("??/*")
                      if p.is_file()}
        bad_blobs = [name for name, path in blob_files.items()
                     if hashlib.sha256(path.read_bytes()).hexdigest() != name]
        lost = sorted(set(expected) - listed)
        lost_blobs = sorted(set(expected) - set(blob_files))
    total = bytes_moved["up"] + bytes_moved["down"]
    out: dict[str, Any] = {
        "clients": clients, "modules_per_client": per_client, "module_bytes": len(
            next(iter(expected.values()))),
        "wall_s": wall, "uploads": len(stats["upload"]), "downloads": len(stats["download"]),
        "bytes_up": bytes_moved["up"], "bytes_down": bytes_moved["down"],
        "throughput_MiB_s": mbs(total, wall),
        "uploads_per_s": len(stats["upload"]) / wall,
        "downloads_per_s": len(stats["download"]) / wall,
        "latency_s": {k: {"p50": statistics.median(v), "p95": pct(v, 0.95), "max": max(v)}
                      for k, v in stats.items() if v},
        "errors": errors, "lost_in_listing": lost, "lost_blobs": lost_blobs,
        "corrupt_downloads": corrupt, "corrupt_blobs": bad_blobs,
        "listed": len(listed), "expected": len(expected),
    }
    print(f"{clients} clients: {out['uploads']} uploads + {out['downloads']} verified downloads "
          f"in {wall:.1f} s -> {out['throughput_MiB_s']:.1f} MiB/s total, "
          f"{out['uploads_per_s']:.1f} uploads/s, {out['downloads_per_s']:.1f} downloads/s")
    for k, v in out["latency_s"].items():
        print(f"  {k:9s} p50 {ms(v['p50'])}, p95 {ms(v['p95'])}, max {ms(v['max'])}")
    print(f"  lost: {len(lost)} (listing), {len(lost_blobs)} (store); corrupt: {len(corrupt)} "
          f"(downloads), {len(bad_blobs)} (blobs); errors: {len(errors)}")
    for e in errors[:5]:
        print("   ", e)
    ok = not (errors or lost or lost_blobs or corrupt or bad_blobs) and \
        out["uploads"] == len(expected)
    out["ok"] = ok
    print("  zero lost or corrupt modules: " + ("yes" if ok else "NO"), flush=True)
    return out
