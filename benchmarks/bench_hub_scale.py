"""Hub scale-out benchmark (issue 13, item 6): one process vs replicas vs nginx, in one run.

Run: ``.venv/bin/python benchmarks/bench_hub_scale.py [--modules 6] [--clients 3]
[--list-modules 10000] [--quick]``; results go to ``benchmarks/results/hub/scale.json``.

Configurations, each a real deployment on loopback started by this script:
  * ``single``: the embedded default, one ``moma-hub serve`` on SQLite and a local folder;
  * ``replica1``: one replica on PostgreSQL + SeaweedFS (S3);
  * ``replicas3``: three replicas on the same PostgreSQL database and bucket, each client
    talking to the replicas itself (``--hub a,b,c``: gRPC round robin);
  * ``nginx3``: the same three replicas behind nginx (``grpc_pass``).
Workload (identical in each): ``--clients`` concurrent labs upload ``--modules`` distinct valid
CHGNet modules of the largest size the hub accepts (about 9.1 MiB each), every one is approved,
then every client downloads every module with every check (chunk CRCs, sha256, contributor
signature, countersignature). Throughput = bytes / wall time of the phase; ratios are to
``single``. The floor for uploads is the least any durable store must do: a bare gRPC stream of
the same bytes that a separate process writes to a file and fsyncs (``bench_hub_bare.py``),
measured in the same run; ``upload / floor`` is the issue's 0.7 goal. Last, the listing p95
with ``--list-modules`` approved modules on PostgreSQL, through nginx.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub_bare import BareClient, start_bare_subprocess
from hub_harness import (
    MIB,
    Lab,
    ModuleFactory,
    contribute,
    fetch_verified,
    largest_valid_size,
    operator_call,
)

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma_client.hub.connection import replica_target
from tests.server import postgres
from tests.server.cluster import Cluster
from tests.server.hubtest import HubProcess
from tests.server.seaweed import Seaweed

RESULTS = Path(__file__).resolve().parent / "results" / "hub"


class Target:
    """Where clients and the operator send their calls in one configuration."""

    def __init__(self, client_address: str, operator_address: str, operator: Any,
                 hub_id: str) -> None:
        self.client_address, self.operator_address = client_address, operator_address
        self.operator, self.hub_id = operator, hub_id

    def channel(self) -> grpc.Channel:
        if "," in self.client_address:
            target, options = replica_target(self.client_address)
            return grpc.insecure_channel(target, options=options)
        return grpc.insecure_channel(self.client_address)

    def op(self, method: str, request: Any) -> Any:
        with grpc.insecure_channel(self.operator_address) as chan:
            return operator_call(hub_pb2_grpc.OperatorServiceStub(chan), self.operator,
                                 self.hub_id, method, request)


def workload(target: Target, modules: list[tuple[bytes, dict[str, Any]]], clients: int
             ) -> dict[str, float]:
    labs = [Lab.new(f"lab-{i}") for i in range(clients)]
    for lab in labs:
        target.op("EnrollKey", hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                        public_key=lab.public_raw))
    total = sum(len(d) for d, _ in modules)
    ids: list[str] = []
    lock = threading.Lock()

    def up(index: int) -> None:
        with target.channel() as chan:
            stub = hub_pb2_grpc.ModuleServiceStub(chan)
            for data, card in modules[index::clients]:
                module_id = contribute(stub, labs[index], target.hub_id, data, card)
                with lock:
                    ids.append(module_id)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(up, range(clients)))
    upload_s = time.perf_counter() - t0
    for module_id in ids:
        target.op("ApproveModule", hub_pb2.ApproveModuleRequest(module_id=module_id))
    with target.channel() as chan:
        hub_public = hub_pb2_grpc.ModuleServiceStub(chan).GetHubInfo(
            hub_pb2.GetHubInfoRequest(), timeout=60).hub_public_key

    def down(index: int) -> None:
        with target.channel() as chan:
            stub = hub_pb2_grpc.ModuleServiceStub(chan)
            for module_id in ids:
                fetch_verified(stub, module_id, hub_public)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(down, range(clients)))
    download_s = time.perf_counter() - t0
    return {"upload_mib_s": total / MIB / upload_s,
            "download_mib_s": clients * total / MIB / download_s,
            "upload_s": upload_s, "download_s": download_s, "bytes": total}


@contextlib.contextmanager
def single(work: Path) -> Iterator[Target]:
    hub = HubProcess(work / "single", hub_id="bench-scale", max_module_bytes=256 * MIB,
                     extra=["--log-level", "WARNING"]).start()
    try:
        yield Target(hub.address, hub.address, hub.operator, hub.hub_id)
    finally:
        hub.stop()


def floor(work: Path, data: bytes, repeats: int) -> float:
    """Best MiB/s of the bare write+fsync stream over the same bytes (separate process)."""
    proc, address = start_bare_subprocess(work)
    client = BareClient(address)
    try:
        best = min(_timed(lambda: client.upload_disk(data)) for _ in range(repeats))
    finally:
        client.close()
        proc.terminate()
        proc.wait()
    return len(data) / MIB / best


def _timed(func: Any) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def listing_p95(target: Target, factory: ModuleFactory, total: int, reps: int) -> dict[str, Any]:
    lab = Lab.new("lab-fill")
    target.op("EnrollKey", hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                    public_key=lab.public_raw))
    base, card = factory.cgcnn_base()
    with target.channel() as chan:
        stub = hub_pb2_grpc.ModuleServiceStub(chan)
        base_id = contribute(stub, lab, target.hub_id, base, card)
    target.op("ApproveModule", hub_pb2.ApproveModuleRequest(module_id=base_id))

    def fill(worker: int) -> None:
        with target.channel() as chan:
            stub = hub_pb2_grpc.ModuleServiceStub(chan)
            for seed in range(worker, total - 1, 4):
                data, card_ = factory.cgcnn_adapter(seed, task=f"task-{seed % 11}")
                module_id = contribute(stub, lab, target.hub_id, data, card_)
                target.op("ApproveModule", hub_pb2.ApproveModuleRequest(module_id=module_id))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(fill, range(4)))
    fill_s = time.perf_counter() - t0
    out: dict[str, Any] = {"modules": total, "fill_s": fill_s}
    with target.channel() as chan:
        stub = hub_pb2_grpc.ModuleServiceStub(chan)
        for name, request in (("first_page_100", hub_pb2.ListModulesRequest(page_size=100)),
                              ("task_filter_page_100",
                               hub_pb2.ListModulesRequest(page_size=100, task="task-3"))):
            times = [_timed(lambda r=request: stub.ListModules(r, timeout=60))
                     for _ in range(reps)]
            times.sort()
            out[name] = {"p50_ms": 1000 * statistics.median(times),
                         "p95_ms": 1000 * times[max(0, int(0.95 * len(times)) - 1)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", type=int, default=6)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="floor: best of N")
    parser.add_argument("--list-modules", type=int, default=10_000)
    parser.add_argument("--list-reps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.modules, args.list_modules, args.list_reps = 3, 200, 20
    factory = ModuleFactory()
    size = largest_valid_size()
    modules = [factory.chgnet_full(900 + i, size=size) for i in range(args.modules)]
    result: dict[str, Any] = {"command": " ".join(sys.argv), "module_bytes": size,
                              "modules": args.modules, "clients": args.clients}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        result["floor_upload_mib_s"] = floor(work, b"".join(d for d, _ in modules),
                                             args.repeats)
        with single(work) as target:
            result["single"] = workload(target, modules, args.clients)
        print(json.dumps(result, indent=1), flush=True)
        with postgres.cluster():
            weed = Seaweed(work / "weed").start()
            try:
                for name, size_, via in (("replica1", 1, "direct"), ("replicas3", 3, "list")):
                    with postgres.database() as url, \
                            Cluster(work / name, url, weed, size=size_) as cluster:
                        assert cluster.nginx is not None
                        client = cluster.addresses if via == "list" else cluster.replicas[0].address
                        target = Target(client, cluster.nginx.address, cluster.operator,
                                        cluster.hub_id)
                        result[name] = workload(target, modules, args.clients)
                        if size_ == 3:  # the same replicas through nginx, new modules
                            nginx = Target(cluster.nginx.address, cluster.nginx.address,
                                           cluster.operator, cluster.hub_id)
                            fresh = [factory.chgnet_full(950 + i, size=size)
                                     for i in range(args.modules)]
                            result["nginx3"] = workload(nginx, fresh, args.clients)
                            print(json.dumps(result, indent=1), flush=True)
                            result["list_nginx3"] = listing_p95(nginx, factory,
                                                                args.list_modules,
                                                                args.list_reps)
            finally:
                weed.stop()
    base = result["single"]
    for name in ("replica1", "replicas3", "nginx3"):
        for key in ("upload_mib_s", "download_mib_s"):
            result[name][key.replace("_mib_s", "_ratio_to_single")] = (
                result[name][key] / base[key])
    for name in ("single", "replica1", "replicas3", "nginx3"):
        result[name]["upload_ratio_to_floor"] = (result[name]["upload_mib_s"]
                                                 / result["floor_upload_mib_s"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"scale{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=True))
    print(json.dumps(result, indent=1, sort_keys=True))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
