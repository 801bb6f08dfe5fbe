"""Hub benchmarks (issue 4, item 7): transfer against bare gRPC, list latency, 32 clients.

Run: ``.venv/bin/python benchmarks/bench_hub.py [--db sqlite|postgres|both] [--sections a,b,c]``
(``--quick`` for a smoke run). Every figure comes from the real ``moma-hub serve`` subprocess on
loopback (plaintext, ``--insecure``), driven through the generated stubs with real, valid,
signed modules; results are printed and written to ``benchmarks/results/hub/<db>.json``.

(a) transfer. The hub's upload is what a lab does (sign a manifest, StartUpload, stream 1 MiB
    chunks each with its sha256, FinishUpload, where the hub re-hashes the whole file, checks the
    manifest, the safetensors header, the backbone schema and finiteness, then renames the blob
    into the content-addressed store and commits the row and audit entry); its download is what
    a downstream client does (stream, check each chunk's sha256, the whole file's sha256 and
    size, the contributor's manifest signature and the hub's countersignature). The baseline is
    a bare gRPC service moving the same bytes in the same 1 MiB messages with no protobuf
    fields, hashing or disk (client-streaming for upload, server-streaming for download), both in
    a separate process (like the hub) and in this process. Runs alternate hub / bare, best of
    ``--repeats``; ratio = bare time / hub time (hub throughput as a share of bare gRPC).

    64 MiB: no backbone schema makes a module that large. The biggest schema is CHGNet full
    (1.65 MB of tensors) and the hub caps the safetensors header at 8 MiB, so the largest module
    the hub can accept is about 9.6 MB (``hub_harness.largest_valid_size``). The 64 MiB figure is
    therefore 7 distinct valid modules of 64/7 MiB each, uploaded (and downloaded) one after the
    other with every per-module cost (signature, StartUpload, checks, commit), against one bare
    64 MiB stream; plus one 64 MiB upload session (streamed, chunk-hashed, fsynced, whole-file
    hashed, header parsed) that the hub then refuses at the schema check, as it must. The same
    64 MiB also goes through the project's own client package (``moma_client.hub.contribute``
    and ``ModuleCache.fetch``, which add the client's module checks, its partial file and its
    cache install). A cost model times each per-byte step of the hub alone on 64 MiB.

(b) list latency with ``--list-modules`` (10,000) approved modules, every one a real upload
    (CGCNN adapter modules, 75 kB, from ``--fill-clients`` concurrent clients) approved through
    the real operator RPC; the same queries are measured at ``--list-small`` modules first, so
    the printed ratio compares a small and a full hub in one run.

(c) ``--clients`` (32) concurrent clients, each with its own channel and enrolled lab key:
    each uploads ``--client-modules`` CHGNet full modules (1.65 MB), has them approved, downloads
    random approved modules of others while the others still upload, then downloads every
    module of its neighbour. Every download is verified byte for byte against the bytes that
    were uploaded; at the end the listing, the database and the files of the blob store are
    checked against what was sent: zero lost or corrupt modules is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_harness import (
    CHUNK,
    MIB,
    HubProcess,
    Lab,
    ModuleFactory,
    approve,
    bench_hub,
    contribute,
    enroll,
    fetch_verified,
    read_line,
)

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.chunks import make_chunk

RESULTS = Path(__file__).resolve().parent / "results" / "hub"
BARE_SERVICE = "bench.Bare"
PG = {"role": "moma_bench", "password": "moma_bench", "host": "127.0.0.1", "port": 5432}


# -- the bare gRPC baseline ----------------------------------------------------------------------


def bare_server(listen: str = "127.0.0.1:0", disk_dir: str | None = None
                ) -> tuple[grpc.Server, int]:
    """Receives chunks and counts them (upload); streams slices of a buffer (download).

    ``UploadDisk`` also writes the chunks to a file in ``disk_dir`` and fsyncs it (then deletes
    it): the floor of any durable store, shown to separate the disk's cost from the hub's."""
    blob = bytes(range(256)) * (CHUNK // 256)

    def upload(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        total = 0
        for chunk in chunks:
            total += len(chunk)
        return total.to_bytes(8, "little")

    def upload_disk(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        # the least a durable store must do: write the bytes to a file and fsync it
        total = 0
        fd, path = tempfile.mkstemp(prefix="bare-", dir=disk_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    total += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            os.unlink(path)
        return total.to_bytes(8, "little")

    def download(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        size = int.from_bytes(request, "little")
        sent = 0
        while sent < size:
            piece = blob[: min(CHUNK, size - sent)]
            sent += len(piece)
            yield piece

    handler = grpc.method_handlers_generic_handler(BARE_SERVICE, {
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "UploadDisk": grpc.stream_unary_rpc_method_handler(upload_disk),
        "Download": grpc.unary_stream_rpc_method_handler(download),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 4 * MIB),
                                  ("grpc.max_send_message_length", 4 * MIB)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    server.start()
    return server, port


class BareClient:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self._up = self.channel.stream_unary(f"/{BARE_SERVICE}/Upload")
        self._down = self.channel.unary_stream(f"/{BARE_SERVICE}/Download")
        self._up_disk = self.channel.stream_unary(f"/{BARE_SERVICE}/UploadDisk")

    def upload(self, data: bytes) -> None:
        view = memoryview(data)
        got = self._up((bytes(view[o:o + CHUNK]) for o in range(0, len(data), CHUNK)),
                       timeout=300)
        assert int.from_bytes(got, "little") == len(data)

    def upload_disk(self, data: bytes) -> None:
        view = memoryview(data)
        got = self._up_disk((bytes(view[o:o + CHUNK]) for o in range(0, len(data), CHUNK)),
                            timeout=300)
        assert int.from_bytes(got, "little") == len(data)

    def download(self, size: int) -> None:
        got = sum(len(piece) for piece in self._down(size.to_bytes(8, "little"), timeout=300))
        assert got == size

    def close(self) -> None:
        self.channel.close()


def start_bare_subprocess(disk_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "--bare-server", str(disk_dir)],
                            stdout=subprocess.PIPE, text=True)
    line = read_line(proc, 60)
    if not line.startswith("bare listening on "):
        proc.kill()
        raise RuntimeError(f"bare server did not start: {line!r}")
    return proc, line.split()[-1]


# -- small utilities -----------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mbs(nbytes: float, seconds: float) -> float:
    return nbytes / MIB / seconds


# -- (a) transfer ----------------------------------------------------------------------------------


def section_transfer(db: str, workdir: Path, factory: ModuleFactory, repeats: int,
                     quick: bool) -> dict[str, Any]:
    print(f"\n== (a) transfer through the hub vs bare gRPC [{db_name(db)}] ==", flush=True)
    big = 64 * MIB
    per = big // 7
    sizes = [("chgnet_full_1.6MB", 0), ("chgnet_full_padded_4MiB", 4 * MIB),
             ("largest_valid_9.1MiB", per)]
    if quick:
        sizes = sizes[:1] + sizes[2:]
    seed = iter(range(1_000_000, 2_000_000))
    (workdir / "bare").mkdir(exist_ok=True)
    sub_proc, sub_addr = start_bare_subprocess(workdir / "bare")
    in_server, in_port = bare_server(disk_dir=str(workdir / "bare"))
    bare = {"subprocess": BareClient(sub_addr), "in-process": BareClient(f"127.0.0.1:{in_port}")}
    out: dict[str, Any] = {"repeats": repeats, "rows": []}
    try:
        with bench_hub(workdir / "hub-a", db=db) as hub, hub.channel() as channel:
            stub = hub_pb2_grpc.ModuleServiceStub(channel)
            hub_public = stub.GetHubInfo(hub_pb2.GetHubInfoRequest()).hub_public_key
            lab = Lab.new("lab-bench")
            enroll(hub, channel, lab)
            # warm-up: the first check of a backbone builds its schema and base digest
            warm = factory.chgnet_full(next(seed))
            mid = contribute(stub, lab, hub.hub_id, *warm)
            approve(hub, channel, mid)
            fetch_verified(stub, mid, hub_public)
            for b in bare.values():
                b.upload(warm[0])
                b.download(len(warm[0]))

            def hub_upload(modules: list[tuple[bytes, dict[str, Any]]],
                           phases: dict[str, float]) -> list[str]:
                return [contribute(stub, lab, hub.hub_id, d, c, phases=phases)
                        for d, c in modules]

            def measure(label: str, make: Callable[[], list[tuple[bytes, dict[str, Any]]]],
                        total: int, reps: int) -> None:
                times: dict[str, list[float]] = {k: [] for k in (
                    "hub_up", "hub_down", "bare_sub_up", "bare_sub_down", "bare_in_up",
                    "bare_in_down", "bare_disk_up")}
                payload = os.urandom(total)
                phases: list[dict[str, float]] = []
                for _ in range(reps):
                    modules = make()
                    assert sum(len(d) for d, _ in modules) == total, label
                    phases.append({})
                    t, ids = timed(lambda: hub_upload(modules, phases[-1]))  # noqa: B023
                    times["hub_up"].append(t)
                    times["bare_sub_up"].append(
                        timed(lambda: bare["subprocess"].upload(payload))[0])
                    times["bare_in_up"].append(timed(lambda: bare["in-process"].upload(payload))[0])
                    times["bare_disk_up"].append(
                        timed(lambda: bare["subprocess"].upload_disk(payload))[0])
                    for module_id in ids:
                        approve(hub, channel, module_id)

                    def hub_down(ids: list[str] = ids, modules: list[Any] = modules) -> None:
                        for module_id, (data, _) in zip(ids, modules, strict=True):
                            assert fetch_verified(stub, module_id, hub_public) == data

                    times["hub_down"].append(timed(hub_down)[0])
                    times["bare_sub_down"].append(
                        timed(lambda: bare["subprocess"].download(total))[0])
                    times["bare_in_down"].append(
                        timed(lambda: bare["in-process"].download(total))[0])
                best = {k: min(v) for k, v in times.items()}
                fastest = phases[times["hub_up"].index(best["hub_up"])]
                row = {"case": label, "bytes": total, "modules": len(modules),
                       "hub_up_phases_s": fastest,
                       "best_s": best, "all_s": times,
                       "ratio_up_vs_bare_subprocess": best["bare_sub_up"] / best["hub_up"],
                       "ratio_down_vs_bare_subprocess": best["bare_sub_down"] / best["hub_down"],
                       "ratio_up_vs_bare_in_process": best["bare_in_up"] / best["hub_up"],
                       "ratio_down_vs_bare_in_process": best["bare_in_down"] / best["hub_down"],
                       "ratio_up_vs_bare_fsync": best["bare_disk_up"] / best["hub_up"],
                       "hub_up_MiB_s": mbs(total, best["hub_up"]),
                       "hub_down_MiB_s": mbs(total, best["hub_down"]),
                       "bare_sub_up_MiB_s": mbs(total, best["bare_sub_up"]),
                       "bare_sub_down_MiB_s": mbs(total, best["bare_sub_down"])}
                out["rows"].append(row)
                print(f"{label:32s} {total / MIB:6.2f} MiB x{len(modules)}  "
                      f"up: hub {mbs(total, best['hub_up']):7.1f} MiB/s, bare(sub) "
                      f"{mbs(total, best['bare_sub_up']):7.1f}, bare(in) "
                      f"{mbs(total, best['bare_in_up']):7.1f} -> ratio "
                      f"{row['ratio_up_vs_bare_subprocess']:.2f} / "
                      f"{row['ratio_up_vs_bare_in_process']:.2f}, bare+fsync "
                      f"{mbs(total, best['bare_disk_up']):7.1f} -> "
                      f"{row['ratio_up_vs_bare_fsync']:.2f} | down: hub "
                      f"{mbs(total, best['hub_down']):7.1f}, bare(sub) "
                      f"{mbs(total, best['bare_sub_down']):7.1f}, bare(in) "
                      f"{mbs(total, best['bare_in_down']):7.1f} -> ratio "
                      f"{row['ratio_down_vs_bare_subprocess']:.2f} / "
                      f"{row['ratio_down_vs_bare_in_process']:.2f}", flush=True)
                print(" " * 33 + "hub upload phases (fastest run): " + ", ".join(
                    f"{k} {ms(v)}" for k, v in fastest.items()), flush=True)

            for label, size in sizes:
                one = len(factory.chgnet_full(0, size)[0])
                def make(size: int = size) -> list[tuple[bytes, dict[str, Any]]]:
                    return [factory.chgnet_full(next(seed), size)]

                measure(label, make, one, repeats)
            measure("64MiB_as_7_valid_modules",
                    lambda: [factory.chgnet_full(next(seed), per) for _ in range(7)],
                    7 * per, max(2, repeats // 2) if not quick else 1)
            out["client_package_64MiB"] = client_package(
                hub, channel, lab, workdir, bare["subprocess"],
                lambda: [factory.chgnet_full(next(seed), per) for _ in range(7)],
                max(2, repeats // 2) if not quick else 1)
            out["single_session_64MiB"] = single_session(stub, lab, hub, factory, bare, big,
                                                         max(2, repeats // 2) if not quick else 1)
        out["cost_model"] = cost_model(workdir, factory, repeats)
    finally:
        for b in bare.values():
            b.close()
        in_server.stop(0)
        sub_proc.terminate()
        sub_proc.wait(30)
    return out


def client_package(hub: HubProcess, channel: grpc.Channel, lab: Lab, workdir: Path,
                   bare: BareClient, make: Callable[[], list[tuple[bytes, dict[str, Any]]]],
                   reps: int) -> dict[str, Any]:
    """The same 64 MiB (7 valid modules) through the project's own client package:
    ``moma_client.hub.contribute`` (loads and checks the module folder, signs, streams,
    finishes) and ``ModuleCache.fetch`` (streams to a partial file, fsyncs, verifies the
    signatures and the sha256, installs the module folder after checking it again)."""
    from moma.modules.card import ModuleCard
    from moma.modules.store import save_module_bytes
    from moma.trust.keys import public_key_from_raw
    from moma_client.hub import HubClient, ModuleCache, Transport, contribute

    os.environ["MOMA_CACHE"] = str(workdir / "client-cache")
    os.environ["MOMA_KNOWN_HUBS"] = str(workdir / "known_hubs.json")
    stub = hub_pb2_grpc.ModuleServiceStub(channel)
    hub_key = public_key_from_raw(stub.GetHubInfo(hub_pb2.GetHubInfoRequest()).hub_public_key)
    times: dict[str, list[float]] = {"up": [], "down": [], "bare_up": [], "bare_down": []}
    total = 0
    with HubClient(Transport(hub.address, insecure=True), hub_key=hub_key) as client:
        for rep in range(reps):
            modules = make()
            total = sum(len(d) for d, _ in modules)
            folders = []
            for i, (data, card) in enumerate(modules):
                folder = workdir / f"client-modules-{rep}-{i}"
                save_module_bytes(folder, data, ModuleCard.from_json(card))
                folders.append(folder)
            t, done = timed(lambda: [contribute(client, lab.private, f)
                                     for f in folders])  # noqa: B023
            times["up"].append(t)
            times["bare_up"].append(timed(lambda: bare.upload(b"\0" * total))[0])  # noqa: B023
            ids = [c.module.module_id for c in done]
            for module_id in ids:
                approve(hub, channel, module_id)
            cache = ModuleCache(workdir / f"client-cache-{rep}")
            t, fetched = timed(lambda: [cache.fetch(client, m) for m in ids])  # noqa: B023
            times["down"].append(t)
            times["bare_down"].append(timed(lambda: bare.download(total))[0])  # noqa: B023
            for f, (data, _) in zip(fetched, modules, strict=True):
                got = (f.path / "module.safetensors").read_bytes()
                if got != data:
                    raise RuntimeError(f"client package fetched other bytes for {f.path}")
    best = {k: min(v) for k, v in times.items()}
    out = {"bytes": total, "modules": 7, "all_s": times, "best_s": best,
           "ratio_up_vs_bare_subprocess": best["bare_up"] / best["up"],
           "ratio_down_vs_bare_subprocess": best["bare_down"] / best["down"]}
    print(f"{'64MiB via moma_client.hub':32s} {total / MIB:6.2f} MiB x7  up: client "
          f"{mbs(total, best['up']):7.1f} MiB/s, bare(sub) {mbs(total, best['bare_up']):7.1f} "
          f"-> ratio {out['ratio_up_vs_bare_subprocess']:.2f} | down: client "
          f"{mbs(total, best['down']):7.1f}, bare(sub) {mbs(total, best['bare_down']):7.1f} "
          f"-> ratio {out['ratio_down_vs_bare_subprocess']:.2f}", flush=True)
    return out


def single_session(stub: hub_pb2_grpc.ModuleServiceStub, lab: Lab, hub: HubProcess,
                   factory: ModuleFactory, bare: dict[str, BareClient], size: int,
                   reps: int) -> dict[str, Any]:
    """One 64 MiB upload session: the hub streams, hashes and fsyncs it, re-hashes the file,
    parses the header, then refuses it at the schema check (an extra tensor)."""
    import numpy as np
    import safetensors.numpy
    from hub_harness import signed_manifest, upload_requests

    tensors = dict(factory.chgnet_state)
    header_guess = 40_000
    extra = (size - sum(v.nbytes for v in tensors.values()) - header_guess) // 4
    tensors["bench.extra"] = np.zeros(extra, dtype=np.float32)
    data = safetensors.numpy.save(dict(sorted(tensors.items())))
    card = factory.chgnet_full(0)[1]
    hub_times, bare_times, disk_times, codes = [], [], [], []
    for _ in range(reps):
        # a fresh nonce (and so a fresh session) per repeat
        signed = signed_manifest(lab, data, card, hub.hub_id)

        def run(signed: hub_pb2.SignedManifest = signed) -> str:
            start = stub.StartUpload(hub_pb2.StartUploadRequest(signed_manifest=signed),
                                     timeout=60)
            sent = stub.Upload(upload_requests(start.upload_id, data), timeout=300)
            assert sent.offset == len(data)
            try:
                stub.FinishUpload(hub_pb2.FinishUploadRequest(upload_id=start.upload_id),
                                  timeout=300)
            except grpc.RpcError as exc:
                return f"{exc.code().name}: {exc.details()[:160]}"
            return "OK (unexpected)"

        t, code = timed(run)
        hub_times.append(t)
        codes.append(code)
        bare_times.append(timed(lambda: bare["subprocess"].upload(data))[0])
        disk_times.append(timed(lambda: bare["subprocess"].upload_disk(data))[0])
    ratio = min(bare_times) / min(hub_times)
    print(f"{'single 64 MiB session (refused)':32s} {len(data) / MIB:6.2f} MiB     up: hub "
          f"{mbs(len(data), min(hub_times)):7.1f} MiB/s, bare(sub) "
          f"{mbs(len(data), min(bare_times)):7.1f} -> ratio {ratio:.2f}, bare+fsync "
          f"{mbs(len(data), min(disk_times)):7.1f} -> {min(disk_times) / min(hub_times):.2f}; "
          "hub answer: "
          f"{codes[0][:70]}", flush=True)
    return {"bytes": len(data), "hub_s": hub_times, "bare_sub_s": bare_times,
            "bare_fsync_s": disk_times, "ratio_vs_bare_fsync": min(disk_times) / min(hub_times),
            "ratio_vs_bare_subprocess": ratio, "finish_answer": codes[0]}


def cost_model(workdir: Path, factory: ModuleFactory, reps: int) -> dict[str, Any]:
    """The per-byte steps of the hub's upload and download, each timed alone on 64 MiB in this
    process (best of ``reps``), to show where the hub's time goes beside the bare transfer."""
    import safetensors.numpy

    from moma.backbones.registry import get_backbone
    from moma.modules.safetensors_check import read_safetensors_bytes
    from moma.modules.store import module_schema

    size = 64 * MIB
    data = os.urandom(size)
    pieces = [data[o:o + CHUNK] for o in range(0, size, CHUNK)]
    target = workdir / "cost-model.bin"

    def write_fsync() -> None:
        with target.open("wb") as handle:
            for piece in pieces:
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())

    def read_back() -> None:
        assert len(target.read_bytes()) == size

    def chunk_messages() -> None:
        for i, piece in enumerate(pieces):
            raw = hub_pb2.UploadRequest(upload_id="x" * 32,
                                        chunk=make_chunk(i * CHUNK, piece)).SerializeToString()
            hub_pb2.UploadRequest.FromString(raw)

    # the module checks on the 1.65 MB of CHGNet tensors, scaled per byte to 64 MiB
    tensors = {k: v for k, v in sorted(factory.chgnet_state.items())}
    module = safetensors.numpy.save(tensors)
    schema = module_schema(get_backbone("chgnet"), "full")
    steps: dict[str, Callable[[], Any]] = {
        "sha256 of 64 MiB (once; hub and client each hash every byte once)":
            lambda: hashlib.sha256(data).hexdigest(),
        "sha256 per 1 MiB chunk, 64 chunks":
            lambda: [hashlib.sha256(p).hexdigest() for p in pieces],
        "write 64 x 1 MiB + fsync": write_fsync,
        "read the 64 MiB file back": read_back,
        "protobuf Chunk encode+decode, 64 x 1 MiB": chunk_messages,
        "copy 64 MiB (bytes(view))": lambda: bytes(memoryview(data)),
        "module checks (header, schema, load, finite) scaled to 64 MiB": lambda: [
            read_safetensors_bytes(module, expected=schema) for _ in range(4)],
    }
    out: dict[str, Any] = {}
    print("\n-- cost model: each step of the hub's per-byte work, alone, on 64 MiB --")
    for name, fn in steps.items():
        fn()
        best = min(timed(fn)[0] for _ in range(reps))
        if name.startswith("module checks"):
            best *= size / (4 * len(module))
        out[name] = best
        print(f"  {name:66s} {ms(best):>10s}  ({size / MIB / best:7.0f} MiB/s)")
    target.unlink(missing_ok=True)
    return out


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


# -- databases ------------------------------------------------------------------------------------


def db_name(db: str) -> str:
    return "PostgreSQL" if db.startswith("postgresql") else "SQLite"


def _psql(sql: str) -> str:
    result = subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -qAtc \"{sql}\""],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {sql}: {result.stderr}")
    return result.stdout.strip()


def _pg_open() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((PG["host"], PG["port"])) == 0


class Postgres:
    """Debian's PostgreSQL 15 cluster (started if needed, stopped only if we started it)."""

    def __init__(self) -> None:
        self.started = False
        self.databases: list[str] = []

    def __enter__(self) -> Postgres:
        if shutil.which("pg_ctlcluster") is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
        if not _pg_open():
            subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True, timeout=120)
            self.started = True
            deadline = time.monotonic() + 60
            while not _pg_open():
                if time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not open 127.0.0.1:5432")
                time.sleep(0.2)
        if not _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{PG['role']}'"):
            _psql(f"CREATE ROLE {PG['role']} LOGIN CREATEDB PASSWORD '{PG['password']}'")
        return self

    def database(self) -> str:
        name = f"moma_bench_{os.urandom(4).hex()}"
        _psql(f"CREATE DATABASE {name} OWNER {PG['role']}")
        self.databases.append(name)
        return (f"postgresql+psycopg://{PG['role']}:{PG['password']}@{PG['host']}:{PG['port']}/"
                f"{name}")

    def __exit__(self, *exc: object) -> None:
        for name in self.databases:
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if self.started:
            subprocess.run(["pg_ctlcluster", "15", "main", "stop"], timeout=120, check=False)


# -- main -----------------------------------------------------------------------------------------


def run(db_kind: str, args: argparse.Namespace, factory: ModuleFactory,
        pg: Postgres | None) -> dict[str, Any]:
    sections = set(args.sections.split(","))
    out: dict[str, Any] = {"db": db_kind, "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="bench-hub-", dir=args.workdir) as tmp:
        work = Path(tmp)

        def url() -> str:
            return pg.database() if (db_kind == "postgres" and pg) else ""

        if "a" in sections:
            out["transfer"] = section_transfer(url(), work, factory, args.repeats, args.quick)
        if "b" in sections:
            out["list"] = section_list(url(), work, factory, args.list_modules, args.list_small,
                                       args.fill_clients, args.list_reps, args.fill_budget)
        if "c" in sections:
            out["concurrent"] = section_concurrent(url(), work, factory, args.clients,
                                                   args.client_modules, args.random_downloads,
                                                   args.client_budget)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--sections", default="a,b,c")
    parser.add_argument("--repeats", type=int, default=5, help="(a) best of N")
    parser.add_argument("--list-modules", type=int, default=10_000)
    parser.add_argument("--list-small", type=int, default=100)
    parser.add_argument("--list-reps", type=int, default=50)
    parser.add_argument("--fill-clients", type=int, default=4)
    parser.add_argument("--fill-budget", type=float, default=1800.0,
                        help="(b) seconds allowed for the real uploads that fill the hub")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client-modules", type=int, default=3)
    parser.add_argument("--random-downloads", type=int, default=1)
    parser.add_argument("--client-budget", type=float, default=600.0)
    parser.add_argument("--workdir", default=None, help="where the hubs' stores go (temporary)")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--bare-server", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        server, port = bare_server(disk_dir=args.bare_server)
        print(f"bare listening on 127.0.0.1:{port}", flush=True)
        server.wait_for_termination()
        return
    if args.quick:
        args.repeats, args.list_modules, args.list_small, args.list_reps = 2, 300, 50, 10
        args.clients, args.client_modules = 8, 2
    factory = ModuleFactory()
    RESULTS.mkdir(parents=True, exist_ok=True)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = []
    for kind in kinds:
        if kind == "postgres":
            with Postgres() as pg:
                result = run(kind, args, factory, pg)
        else:
            result = run(kind, args, factory, None)
        name = f"{kind}{'-quick' if args.quick else ''}.json"
        path = RESULTS / name
        # a run of some sections replaces those sections and keeps the others' figures
        merged = json.loads(path.read_text()) if path.is_file() else {}
        merged.update(result)
        path.write_text(json.dumps(merged, indent=1, sort_keys=True))
        print(f"\nwrote {RESULTS / name}")
        results.append(result)
    if any("concurrent" in r and not r["concurrent"]["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
