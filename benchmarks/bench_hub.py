"""Hub benchmarks (issue 4, item 7): transfer against bare gRPC, list latency, 32 clients.

Run: ``.venv/bin/python benchmarks/bench_hub.py [--db sqlite|postgres|both] [--sections a,b,c]``
Each section lives in its own module (``bench_hub_transfer.py``, ``bench_hub_list.py``,
``bench_hub_concurrent.py``; the bare baseline in ``bench_hub_bare.py``); PostgreSQL comes from
the tests' helper (``tests/server/postgres.py``), so benchmarks and tests start it one way.
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
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub_concurrent import section_concurrent
from bench_hub_list import section_list
from bench_hub_transfer import section_transfer
from hub_harness import ModuleFactory

from tests.server import postgres

RESULTS = Path(__file__).resolve().parent / "results" / "hub"


def run(db_kind: str, args: argparse.Namespace, factory: ModuleFactory) -> dict[str, Any]:
    sections = set(args.sections.split(","))
    out: dict[str, Any] = {"db": db_kind, "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="bench-hub-", dir=args.workdir) as tmp:
        work = Path(tmp)

        databases = contextlib.ExitStack()

        def url() -> str:
            """A fresh database per section (the tests' PostgreSQL helper), or SQLite."""
            if db_kind != "postgres":
                return ""
            return databases.enter_context(postgres.database())

        if "a" in sections:
            out["transfer"] = section_transfer(url(), work, factory, args.repeats, args.quick)
        if "b" in sections:
            out["list"] = section_list(url(), work, factory, args.list_modules, args.list_small,
                                       args.fill_clients, args.list_reps, args.fill_budget)
        if "c" in sections:
            out["concurrent"] = section_concurrent(url(), work, factory, args.clients,
                                                   args.client_modules, args.random_downloads,
                                                   args.client_budget)
        databases.close()
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
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.list_modules, args.list_small, args.list_reps = 2, 300, 50, 10
        args.clients, args.client_modules = 8, 2
    factory = ModuleFactory()
    RESULTS.mkdir(parents=True, exist_ok=True)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = []
    for kind in kinds:
        if kind == "postgres":
            with postgres.cluster():
                result = run(kind, args, factory)
        else:
            result = run(kind, args, factory)
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
