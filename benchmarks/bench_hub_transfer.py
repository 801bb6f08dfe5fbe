"""Hub benchmark section (a): upload and download against the bare gRPC baseline.

See ``bench_hub.py`` for what is measured and why; this module holds the section's code.
"""


from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub_bare import BareClient, bare_server, db_name, mbs, ms, start_bare_subprocess, timed
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
)

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.chunks import make_chunk

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
