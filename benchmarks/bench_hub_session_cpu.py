"""CPU per upload session: where the time of one 64 MiB upload goes, hub and client apart.

Why: on a machine whose cores are shared (2 here, with other jobs), the transfer ratio of
``bench_hub_scale.py`` follows the CPU each side needs, and wall times of single sessions
spread widely. This script measures what does not spread as much: the CPU seconds the hub
process (``/proc/PID/stat``) and the client process (``time.process_time``) spend on one
session (StartUpload, then one Upload stream of 1 MiB chunks until the hub holds every byte
durably), and the same for the floor of ``bench_hub_scale.py`` (a bare gRPC stream to a
separate process that sha256-hashes and fsyncs), alternately, on the default folder + SQLite
hub. To compare two versions of the code, run it in a checkout of each, alternately.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_hub_session_cpu.py [--sessions 8]
[--out FILE]``; prints medians and writes every session's numbers as JSON.
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
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub_bare import BareClient, start_bare_subprocess
from bench_hub_scale import SESSION_BYTES, Target, warm
from hub_harness import MIB, ModuleFactory, signed_manifest, upload_requests

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from tests.server.hubtest import HubProcess


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_session(stub: hub_pb2_grpc.ModuleServiceStub, target: Target, lab: Any, hub_pid: int,
                data: bytes, card: dict[str, Any]) -> dict[str, float]:
    signed = signed_manifest(lab, data, card, target.hub_id)  # the lab's hash: off the clock
    client0, hub0, t0 = time.process_time(), process_cpu(hub_pid), time.perf_counter()
    start = stub.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed), timeout=120)
    t1 = time.perf_counter()
    held = stub.Upload(upload_requests(start.upload_id, data), timeout=600).offset
    t2, hub1, client1 = time.perf_counter(), process_cpu(hub_pid), time.process_time()
    assert held == len(data), (held, len(data))
    with contextlib.suppress(grpc.RpcError):  # refused at the schema check: discarded
        stub.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id), timeout=600)
    return {"start_s": t1 - t0, "wall_s": t2 - t0, "hub_cpu_s": hub1 - hub0,
            "client_cpu_s": client1 - client0}


def one_floor(bare: BareClient, bare_pid: int, data: bytes, digest: bytes) -> dict[str, float]:
    client0, server0, t0 = time.process_time(), process_cpu(bare_pid), time.perf_counter()
    bare.upload_durable(data, "UploadHashFsync", digest)
    t1, server1, client1 = time.perf_counter(), process_cpu(bare_pid), time.process_time()
    return {"wall_s": t1 - t0, "server_cpu_s": server1 - server0,
            "client_cpu_s": client1 - client0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="JSON with every session")
    args = parser.parse_args()
    factory = ModuleFactory()
    data = os.urandom(SESSION_BYTES)
    digest = hashlib.sha256(data).digest()
    _, card = factory.chgnet_full(1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-session-cpu-") as tmp:
        work = Path(tmp)
        proc, address = start_bare_subprocess(work)
        bare = BareClient(address)
        try:
            hub = HubProcess(work / "single", hub_id="bench-scale", max_module_bytes=256 * MIB,
                             extra=["--log-level", "WARNING"]).start(timeout=600)
            try:
                assert hub.proc is not None
                target = Target(hub.address, hub.address, hub.operator, hub.hub_id)
                warm([target.client_address], target, factory)
                lab = target.lab("lab-cpu")
                with target.channel() as chan:
                    stub = hub_pb2_grpc.ModuleServiceStub(chan)
                    for _ in range(args.sessions):  # alternately: the same minutes for both
                        rows.append({"hub": one_session(stub, target, lab, hub.proc.pid, data,
                                                        card),
                                     "floor": one_floor(bare, proc.pid, data, digest),
                                     "load_avg": os.getloadavg()})
            finally:
                hub.stop()
        finally:
            bare.close()
            proc.terminate()
            proc.wait()

    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rows)

    summary = {"sessions": len(rows), "session_bytes": SESSION_BYTES,
               "hub_cpu_s": med("hub", "hub_cpu_s"), "client_cpu_s": med("hub", "client_cpu_s"),
               "floor_server_cpu_s": med("floor", "server_cpu_s"),
               "floor_client_cpu_s": med("floor", "client_cpu_s"),
               "hub_wall_s": med("hub", "wall_s"), "floor_wall_s": med("floor", "wall_s"),
               "best_ratio": min(r["floor"]["wall_s"] for r in rows)
               / min(r["hub"]["wall_s"] for r in rows)}
    print(json.dumps(summary, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "sessions": rows}, indent=1))


if __name__ == "__main__":
    main()
