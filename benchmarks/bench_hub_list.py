"""Hub benchmark section (b): list latency with a hub filled by real uploads."""


from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub_bare import db_name, ms, pct, timed
from hub_harness import HubProcess, Lab, ModuleFactory, approve, bench_hub, contribute, enroll

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc

# -- (b) list latency ------------------------------------------------------------------------------


def fill(hub: HubProcess, factory: ModuleFactory, labs: list[Lab], start: int, stop: int,
         clients: int, hub_public: bytes, deadline: float) -> dict[str, Any]:
    """Real uploads and approvals of adapter modules ``start..stop-1`` from ``clients`` threads."""
    counter = iter(range(start, stop))
    lock = threading.Lock()
    done: list[str] = []

    def worker(index: int) -> None:
        lab = labs[index % len(labs)]
        with hub.channel() as channel:
            stub = hub_pb2_grpc.ModuleServiceStub(channel)
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                data, card = factory.cgcnn_adapter(i, task=f"task_{i % 100:02d}")
                module_id = contribute(stub, lab, hub.hub_id, data, card)
                approve(hub, channel, module_id)
                with lock:
                    done.append(module_id)

    t, _ = timed(lambda: list(futures.ThreadPoolExecutor(clients).map(worker, range(clients))))
    return {"uploaded": len(done), "seconds": t, "per_s": len(done) / t if t else 0.0}


def list_queries(stub: hub_pb2_grpc.ModuleServiceStub, expected: int, reps: int
                 ) -> dict[str, Any]:
    """Latency of the listings compose and the CLI issue."""
    def first(page: int, **filters: Any) -> Callable[[], int]:
        return lambda: len(stub.ListModules(hub_pb2.ListModulesRequest(page_size=page, **filters),
                                            timeout=60).modules)

    def everything() -> int:
        token, count = "", 0
        while True:
            response = stub.ListModules(hub_pb2.ListModulesRequest(page_size=1000,
                                                                   page_token=token), timeout=60)
            count += len(response.modules)
            token = response.next_page_token
            if not token:
                return count

    # a page token near the end (the last page), to show paging does not scan from the start
    token, last_token = "", ""
    while True:
        response = stub.ListModules(hub_pb2.ListModulesRequest(page_size=100, page_token=token),
                                    timeout=60)
        if not response.next_page_token:
            break
        last_token, token = response.next_page_token, response.next_page_token
    queries: dict[str, tuple[Callable[[], int], int]] = {
        "first_page_100": (first(100), reps),
        "first_page_1000": (first(1000), max(3, reps // 4)),
        "task_filter_page_100": (first(100, task="task_07", backbone="cgcnn", kind="adapter"),
                                 reps),
        "last_page_by_token_100": (lambda: len(stub.ListModules(hub_pb2.ListModulesRequest(
            page_size=100, page_token=last_token), timeout=60).modules), reps),
        "all_pages_of_1000": (everything, max(3, reps // 10)),
    }
    out: dict[str, Any] = {}
    for name, (fn, n) in queries.items():
        fn()  # warm
        times, counts = [], set()
        for _ in range(n):
            t, count = timed(fn)
            times.append(t)
            counts.add(count)
        out[name] = {"n": n, "min_s": min(times), "p50_s": statistics.median(times),
                     "p95_s": pct(times, 0.95), "rows": sorted(counts)}
    assert out["all_pages_of_1000"]["rows"] == [expected], (out["all_pages_of_1000"], expected)
    return out


def section_list(db: str, workdir: Path, factory: ModuleFactory, total: int, small: int,
                 clients: int, reps: int, budget_s: float) -> dict[str, Any]:
    print(f"\n== (b) list latency, {small} then {total} approved modules [{db_name(db)}] ==",
          flush=True)
    out: dict[str, Any] = {"method": "real uploads (StartUpload/Upload/FinishUpload) of "
                                     "distinct CGCNN adapter modules + ApproveModule RPCs"}
    deadline = time.monotonic() + budget_s
    with bench_hub(workdir / "hub-b", db=db) as hub, hub.channel() as channel:
        stub = hub_pb2_grpc.ModuleServiceStub(channel)
        hub_public = stub.GetHubInfo(hub_pb2.GetHubInfoRequest()).hub_public_key
        labs = [Lab.new(f"lab-{i}") for i in range(4)]
        for lab in labs:
            enroll(hub, channel, lab)
        base_id = contribute(stub, labs[0], hub.hub_id, *factory.cgcnn_base())
        approve(hub, channel, base_id)
        filled = fill(hub, factory, labs, 0, small - 1, clients, hub_public, deadline)
        out["small"] = {"modules": small, "fill": filled,
                        "queries": list_queries(stub, small, reps)}
        filled = fill(hub, factory, labs, small - 1, total - 1, clients, hub_public, deadline)
        count = 1 + out["small"]["fill"]["uploaded"] + filled["uploaded"]
        out["large"] = {"modules": count, "fill": filled,
                        "queries": list_queries(stub, count, reps)}
        out["store_bytes"] = sum(p.stat().st_size for p in hub.store.rglob("*") if p.is_file())
    rate = (out["small"]["fill"]["uploaded"] + filled["uploaded"]) / (
        out["small"]["fill"]["seconds"] + filled["seconds"])
    print(f"filled with real uploads + approvals: {count} modules at {rate:.1f} modules/s "
          f"({clients} clients)" + ("" if count == total else
                                    f"  [stopped by the {budget_s:.0f} s budget]"))
    print(f"{'query':26s} {'p50 @' + str(small):>12s} {'p50 @' + str(count):>12s} "
          f"{'p95 @' + str(count):>12s}  ratio(p50)")
    for name, large in out["large"]["queries"].items():
        little = out["small"]["queries"][name]
        print(f"{name:26s} {ms(little['p50_s']):>12s} {ms(large['p50_s']):>12s} "
              f"{ms(large['p95_s']):>12s}  {large['p50_s'] / little['p50_s']:.2f}x  "
              f"(rows {large['rows']})")
    out["fill_rate_per_s"] = rate
    return out
