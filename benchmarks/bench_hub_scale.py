"""Hub scale-out benchmark (issue 13, item 6): one process vs replicas vs nginx, in one run.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_hub_scale.py [--quick]``; results go to
``benchmarks/results/hub/scale.json`` (``scale-quick.json``), rewritten after every section, and
a rerun with ``--resume`` skips the sections already there (``--redo SECTION`` measures one
again, e.g. ``--resume --redo transfer_single``). ``--budget-min`` bounds the run:
the listing fill stops at the budget and reports how many modules it reached.

Deployments, each real and on loopback, started by this script:
  * ``single``: the embedded default, one ``moma-hub serve`` on SQLite and a local folder;
  * ``replica1``: one replica on PostgreSQL + SeaweedFS (S3);
  * ``replicas3``: three replicas on one database and bucket, the clients listing them all
    (``--hub a,b,c``: gRPC round robin);
  * ``nginx3``: the same three replicas behind nginx (``grpc_pass``).

Sections:
  * ``transfer``: one 64 MiB upload session (StartUpload, then one Upload stream of 1 MiB
    chunks until the hub holds every byte durably: hashed, and fsynced or put as part objects),
    against the least a durable store that checks what it receives must do, measured
    alternately in the same minute: a bare gRPC stream of the same chunks to a separate process
    that sha256-hashes them and writes+fsyncs a file (``floor_file``, for ``single``) or puts
    one S3 object into the same SeaweedFS (``floor_s3``, for ``replica1``). Best of
    ``--repeats``. Beside it, what a lab's whole contribution of the same 64 MiB costs: 7 valid
    CHGNet modules of the largest accepted size, each signed, started, streamed and finished
    (every module check and the probe run), phases timed.
  * ``throughput``: ``--clients`` labs upload ``--modules`` valid modules at once, each is
    approved, then every lab downloads every module with every check (chunk CRCs, sha256,
    contributor and hub signatures). MiB/s = bytes / wall time of the phase; ratio to
    ``single``.
  * ``list``: ListModules p50/p95 with ``--list-modules`` approved modules on PostgreSQL,
    through nginx, each module a real upload + approval (``--list-clients`` at once).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
    signed_manifest,
    upload_requests,
)

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.chunks import CRC32_BACKEND
from moma_client.hub.connection import replica_target
from tests.server import postgres
from tests.server.cluster import Cluster
from tests.server.hubtest import HubProcess
from tests.server.seaweed import Seaweed

RESULTS = Path(__file__).resolve().parent / "results" / "hub"
SESSION_BYTES = 64 * MIB


class Target:
    """Where clients and the operator send their calls in one deployment."""

    def __init__(self, client_address: str, operator_address: str, operator: Any,
                 hub_id: str) -> None:
        self.client_address, self.operator_address = client_address, operator_address
        self.operator, self.hub_id = operator, hub_id

    def channel(self) -> grpc.Channel:
        options = [("grpc.max_receive_message_length", 16 * MIB)]
        if "," in self.client_address:
            target, extra = replica_target(self.client_address)
            return grpc.insecure_channel(target, options=[*options, *extra])
        return grpc.insecure_channel(self.client_address, options=options)

    def op(self, method: str, request: Any) -> Any:
        with grpc.insecure_channel(self.operator_address) as chan:
            return operator_call(hub_pb2_grpc.OperatorServiceStub(chan), self.operator,
                                 self.hub_id, method, request)

    def lab(self, name: str) -> Lab:
        lab = Lab.new(name)
        self.op("EnrollKey", hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                      public_key=lab.public_raw))
        return lab


def warm(addresses: list[str], target: Target, factory: ModuleFactory) -> None:
    """A hub in service: each process has taken one contribution (schemas built, probe graphs
    featurized, connections open) before anything is timed."""
    lab = target.lab("lab-warm")
    for index, address in enumerate(addresses):
        data, card = factory.chgnet_full(700 + index)
        with grpc.insecure_channel(address) as chan:
            contribute(hub_pb2_grpc.ModuleServiceStub(chan), lab, target.hub_id, data, card,
                       timeout=900)


def _timed(func: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


# -- transfer -------------------------------------------------------------------------------------


def session_upload(stub: hub_pb2_grpc.ModuleServiceStub, lab: Lab, hub_id: str, data: bytes,
                   card: dict[str, Any]) -> float:
    """Seconds until the hub holds ``data`` durably in a session; the session is then ended
    (FinishUpload refuses 64 MiB at the schema check and discards it), off the clock."""
    signed = signed_manifest(lab, data, card, hub_id)  # the lab's hash: before the clock
    t0 = time.perf_counter()
    start = stub.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed), timeout=120)
    held = stub.Upload(upload_requests(start.upload_id, data), timeout=600).offset
    took = time.perf_counter() - t0
    assert held == len(data), (held, len(data))
    with contextlib.suppress(grpc.RpcError):
        stub.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id), timeout=600)
    return took


def transfer(target: Target, bare: BareClient, floor_method: str,
             factory: ModuleFactory, repeats: int, valid: list[tuple[bytes, dict[str, Any]]]
             ) -> dict[str, Any]:
    data = os.urandom(SESSION_BYTES)
    digest = hashlib.sha256(data).digest()
    _, card = factory.chgnet_full(1)
    lab = target.lab("lab-transfer")
    hub_s, floor_s = [], []
    load_before = os.getloadavg()
    with target.channel() as chan:
        stub = hub_pb2_grpc.ModuleServiceStub(chan)
        for _ in range(repeats):  # alternately, so both see the same machine
            hub_s.append(session_upload(stub, lab, target.hub_id, data, card))
            floor_s.append(_timed(lambda: bare.upload_durable(data, floor_method, digest)))
        phases: dict[str, float] = {}
        t0 = time.perf_counter()
        for module, module_card in valid:
            contribute(stub, lab, target.hub_id, module, module_card, phases=phases)
        contribute_s = time.perf_counter() - t0
    valid_bytes = sum(len(d) for d, _ in valid)
    return {"session_bytes": SESSION_BYTES, "hub_session_s": hub_s, "floor_s": floor_s,
            "floor": floor_method, "repeats": repeats, "crc32": CRC32_BACKEND,
            "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
            "hub_session_mib_s": SESSION_BYTES / MIB / min(hub_s),
            "floor_mib_s": SESSION_BYTES / MIB / min(floor_s),
            "session_ratio_to_floor": min(floor_s) / min(hub_s),
            # the same from the medians: how much the best-of-N above owes to one lucky run
            "session_ratio_of_medians": statistics.median(floor_s) / statistics.median(hub_s),
            "contribute_bytes": valid_bytes, "contribute_modules": len(valid),
            "contribute_s": contribute_s, "contribute_phases_s": phases,
            "contribute_mib_s": valid_bytes / MIB / contribute_s,
            "contribute_ratio_to_floor": (valid_bytes / MIB / contribute_s)
            / (SESSION_BYTES / MIB / min(floor_s))}


# -- throughput -----------------------------------------------------------------------------------


def workload(target: Target, modules: list[tuple[bytes, dict[str, Any]]], clients: int
             ) -> dict[str, float]:
    labs = [target.lab(f"lab-{i}") for i in range(clients)]
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


# -- listing --------------------------------------------------------------------------------------


def top_up(db_url: str, total: int) -> int:
    """Rows added straight to PostgreSQL until it holds ``total`` approved modules: copies of
    the last uploaded module's row under new ids (spread over the same 11 tasks). Used only
    where real uploads could not reach ``total`` within the budget: the listing reads these
    rows exactly as it reads uploaded ones (it never opens a blob). Returns the rows added."""
    from sqlalchemy import create_engine, func, insert, select
    from sqlalchemy.orm import Session

    from moma_server.store.models import ModuleRow

    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            approved = ModuleRow.state == "approved"
            have = int(session.scalar(select(func.count()).select_from(ModuleRow)
                                      .where(approved)) or 0)
            template = session.scalars(select(ModuleRow).where(approved)
                                       .order_by(ModuleRow.row_id.desc()).limit(1)).one()
            columns = {c.key: getattr(template, c.key) for c in ModuleRow.__table__.columns
                       if c.key != "row_id"}
            rows = []
            for index in range(max(0, total - have)):
                module_id = hashlib.sha256(f"listing-fill-{index}".encode()).hexdigest()
                rows.append({**columns, "module_id": module_id, "manifest_sha256": module_id,
                             "task": f"task-{index % 11}"})
            for start in range(0, len(rows), 1000):
                session.execute(insert(ModuleRow), rows[start:start + 1000])
            session.commit()
            return len(rows)
    finally:
        engine.dispose()


def listing(target: Target, factory: ModuleFactory, total: int, reps: int, workers: int,
            until: float, db_url: str) -> dict[str, Any]:
    lab = target.lab("lab-fill")
    base, card = factory.cgcnn_base()
    with target.channel() as chan:
        base_id = contribute(hub_pb2_grpc.ModuleServiceStub(chan), lab, target.hub_id, base, card)
    target.op("ApproveModule", hub_pb2.ApproveModuleRequest(module_id=base_id))
    stored = [1]
    lock = threading.Lock()

    def fill(worker: int) -> None:
        with target.channel() as chan, grpc.insecure_channel(target.operator_address) as op:
            stub, ops = hub_pb2_grpc.ModuleServiceStub(chan), hub_pb2_grpc.OperatorServiceStub(op)
            for seed in range(worker, total - 1, workers):
                if time.monotonic() > until:
                    return
                data, card_ = factory.cgcnn_adapter(seed, task=f"task-{seed % 11}")
                module_id = contribute(stub, lab, target.hub_id, data, card_)
                operator_call(ops, target.operator, target.hub_id, "ApproveModule",
                              hub_pb2.ApproveModuleRequest(module_id=module_id))
                with lock:
                    stored[0] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fill, range(workers)))
    fill_s = time.perf_counter() - t0
    out: dict[str, Any] = {"modules_target": total, "modules_uploaded": stored[0],
                           "fill_s": fill_s, "fill_modules_per_s": stored[0] / fill_s,
                           "modules_inserted": top_up(db_url, total)}
    with target.channel() as chan:
        stub = hub_pb2_grpc.ModuleServiceStub(chan)
        every = 0
        token = ""
        while True:  # the listing holds what the fill stored
            page = stub.ListModules(hub_pb2.ListModulesRequest(page_size=1000,
                                                               page_token=token), timeout=120)
            every += len(page.modules)
            token = page.next_page_token
            if not token:
                break
        out["modules_listed"] = every
        for name, request in (("first_page_100", hub_pb2.ListModulesRequest(page_size=100)),
                              ("first_page_1000", hub_pb2.ListModulesRequest(page_size=1000)),
                              ("task_filter_page_100",
                               hub_pb2.ListModulesRequest(page_size=100, task="task-3"))):
            times = sorted(_timed(lambda r=request: stub.ListModules(r, timeout=120))
                           for _ in range(reps))
            out[name] = {"p50_ms": 1000 * statistics.median(times),
                         "p95_ms": 1000 * times[round(0.95 * (len(times) - 1))],
                         "n": reps}
    return out


# -- the run --------------------------------------------------------------------------------------


@contextlib.contextmanager
def single_hub(work: Path) -> Iterator[Target]:
    hub = HubProcess(work / "single", hub_id="bench-scale", max_module_bytes=256 * MIB,
                     extra=["--log-level", "WARNING"]).start(timeout=600)
    try:
        yield Target(hub.address, hub.address, hub.operator, hub.hub_id)
    finally:
        hub.stop()


@contextlib.contextmanager
def cluster(work: Path, weed: Seaweed, size: int) -> Iterator[Cluster]:
    with postgres.database() as url, Cluster(work / f"cluster{size}", url, weed,
                                             size=size) as nodes:
        yield nodes


class Run:
    """The result file, written after every section; ``--resume`` skips what it holds."""

    def __init__(self, path: Path, resume: bool, args: argparse.Namespace) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if resume and path.exists() \
            else {}
        self.data.setdefault("runs", []).append({"command": " ".join(sys.argv),
                                                 "started": time.strftime("%FT%TZ",
                                                                          time.gmtime()),
                                                 "load_avg": os.getloadavg()})
        self.data["settings"] = vars(args)

    def done(self, key: str) -> bool:
        return key in self.data

    def save(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data["runs"][-1]["load_avg_" + key] = os.getloadavg()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)
        print(f"[{time.strftime('%T')}] {key}: {json.dumps(value)[:600]}", flush=True)


def ratios(data: dict[str, Any]) -> None:
    base = data.get("throughput_single")
    for name in ("replica1", "replicas3", "nginx3"):
        got = data.get(f"throughput_{name}")
        if base and got:
            for key in ("upload_mib_s", "download_mib_s"):
                got[key.replace("_mib_s", "_ratio_to_single")] = got[key] / base[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", type=int, default=6)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="transfer: best of N")
    parser.add_argument("--list-modules", type=int, default=10_000)
    parser.add_argument("--list-reps", type=int, default=60)
    parser.add_argument("--list-clients", type=int, default=6)
    parser.add_argument("--budget-min", type=float, default=50.0,
                        help="the listing fill stops at this many minutes from the start")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--redo", action="append", default=[], metavar="SECTION",
                        help="with --resume: measure this section again (e.g. transfer_single); "
                             "repeatable")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.modules, args.list_modules, args.list_reps, args.repeats = 3, 200, 20, 1
    until = time.monotonic() + 60 * args.budget_min
    RESULTS.mkdir(parents=True, exist_ok=True)
    run = Run(RESULTS / f"scale{'-quick' if args.quick else ''}.json", args.resume, args)
    for section in args.redo:
        run.data.pop(section, None)
    factory = ModuleFactory()
    size = largest_valid_size()
    modules = [factory.chgnet_full(900 + i, size=size) for i in range(args.modules)]
    fresh = [factory.chgnet_full(950 + i, size=size) for i in range(args.modules)]
    per_64 = -(-SESSION_BYTES // size)  # 7 modules of the largest valid size: 64 MiB
    valid = [factory.chgnet_full(800 + i, size=size) for i in range(per_64)]
    valid_s3 = [factory.chgnet_full(850 + i, size=size) for i in range(per_64)]
    run.data["module_bytes"] = size
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, postgres.cluster():
        work = Path(tmp)
        weed = Seaweed(work / "weed").start()
        bare_bucket = weed.bucket()
        proc, address = start_bare_subprocess(work, {**weed.env,
                                                     "MOMA_BARE_BUCKET": bare_bucket})
        bare = BareClient(address)
        try:
            if not (run.done("transfer_single") and run.done("throughput_single")):
                with single_hub(work) as target:
                    warm([target.client_address], target, factory)
                    if not run.done("transfer_single"):
                        run.save("transfer_single", transfer(target, bare, "UploadHashFsync",
                                                             factory, args.repeats, valid))
                    if not run.done("throughput_single"):
                        run.save("throughput_single", workload(target, modules, args.clients))
            if not (run.done("transfer_replica1") and run.done("throughput_replica1")):
                with cluster(work, weed, 1) as one:
                    target = Target(one.replicas[0].address, one.replicas[0].address,
                                    one.operator, one.hub_id)
                    warm([one.replicas[0].address], target, factory)
                    if not run.done("transfer_replica1"):
                        run.save("transfer_replica1", transfer(target, bare, "UploadHashPut",
                                                               factory, args.repeats,
                                                               valid_s3))
                    if not run.done("throughput_replica1"):
                        run.save("throughput_replica1", workload(target, modules, args.clients))
            if not all(run.done(k) for k in ("throughput_replicas3", "throughput_nginx3",
                                             "list_nginx3")):
                with cluster(work, weed, 3) as three:
                    assert three.nginx is not None
                    listed = Target(three.addresses, three.nginx.address, three.operator,
                                    three.hub_id)
                    proxied = Target(three.nginx.address, three.nginx.address, three.operator,
                                     three.hub_id)
                    warm([r.address for r in three.replicas], listed, factory)
                    if not run.done("throughput_replicas3"):
                        run.save("throughput_replicas3", workload(listed, modules, args.clients))
                    if not run.done("throughput_nginx3"):
                        run.save("throughput_nginx3", workload(proxied, fresh, args.clients))
                    if not run.done("list_nginx3"):
                        run.save("list_nginx3", listing(proxied, factory, args.list_modules,
                                                        args.list_reps, args.list_clients,
                                                        until, three.db))
        finally:
            bare.close()
            proc.terminate()
            proc.wait()
            weed.stop()
    ratios(run.data)
    run.save("finished", time.strftime("%FT%TZ", time.gmtime()))
    print(f"wrote {run.path}")


if __name__ == "__main__":
    main()
