"""Markdown tables of ``benchmarks/bench_hub.py``'s results (for docs/hub.md).

Run: ``.venv/bin/python benchmarks/hub_report.py [benchmarks/results/hub/sqlite.json ...]``
(default: every ``*.json`` in ``benchmarks/results/hub/``). Prints, never computes anything new:
every number is one the benchmark measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "hub"
MIB = 1024 * 1024


def db(result: dict[str, Any]) -> str:
    return "PostgreSQL" if result["db"] == "postgres" else "SQLite"


def transfer(results: list[dict[str, Any]]) -> None:
    print("#### (a) Transfer: hub vs bare gRPC "
          "(best of N, MiB/s; ratio = bare time / hub time)\n")
    print("| db | case | size | hub up | bare up | **ratio up** | (in-proc) | bare+fsync up | "
          "ratio vs bare+fsync | hub down | bare down | **ratio down** | (in-proc) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "transfer" not in r:
            continue
        for row in r["transfer"]["rows"]:
            best = row["best_s"]
            size = f"{row['bytes'] / MIB:.2f} MiB" + (f" ({row['modules']} modules)"
                                                       if row["modules"] > 1 else "")
            print(f"| {db(r)} | {row['case']} | {size} | {row['hub_up_MiB_s']:.0f} | "
                  f"{row['bare_sub_up_MiB_s']:.0f} | "
                  f"**{row['ratio_up_vs_bare_subprocess']:.2f}** | "
                  f"{row['ratio_up_vs_bare_in_process']:.2f} | "
                  f"{row['bytes'] / MIB / best['bare_disk_up']:.0f} | "
                  f"{row['ratio_up_vs_bare_fsync']:.2f} | {row['hub_down_MiB_s']:.0f} | "
                  f"{row['bare_sub_down_MiB_s']:.0f} | "
                  f"**{row['ratio_down_vs_bare_subprocess']:.2f}** | "
                  f"{row['ratio_down_vs_bare_in_process']:.2f} |")
        c = r["transfer"].get("client_package_64MiB")
        if c:
            b = c["best_s"]
            print(f"| {db(r)} | 64 MiB (7 modules) through moma_client.hub (contribute, "
                  f"ModuleCache.fetch) | {c['bytes'] / MIB:.2f} MiB | "
                  f"{c['bytes'] / MIB / b['up']:.0f} | {c['bytes'] / MIB / b['bare_up']:.0f} | "
                  f"**{c['ratio_up_vs_bare_subprocess']:.2f}** | - | - | - | "
                  f"{c['bytes'] / MIB / b['down']:.0f} | {c['bytes'] / MIB / b['bare_down']:.0f} | "
                  f"**{c['ratio_down_vs_bare_subprocess']:.2f}** | - |")
        s = r["transfer"]["single_session_64MiB"]
        hub = min(s["hub_s"])
        print(f"| {db(r)} | one 64 MiB session, refused at the schema check | "
              f"{s['bytes'] / MIB:.2f} MiB | {s['bytes'] / MIB / hub:.0f} | "
              f"{s['bytes'] / MIB / min(s['bare_sub_s']):.0f} | "
              f"**{s['ratio_vs_bare_subprocess']:.2f}** | - | "
              f"{s['bytes'] / MIB / min(s['bare_fsync_s']):.0f} | "
              f"{s['ratio_vs_bare_fsync']:.2f} | - | - | - | - |")
    print()
    print("Hub upload phases of the fastest run (client side, ms): sign = sha256 of the file + "
          "Ed25519; start = StartUpload; stream = Upload; finish = FinishUpload.\n")
    print("| db | case | sign | start | stream | finish |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for row in r.get("transfer", {}).get("rows", []):
            p = row["hub_up_phases_s"]
            print(f"| {db(r)} | {row['case']} | " + " | ".join(
                f"{p[k] * 1000:.1f}" for k in ("sign", "start", "stream", "finish")) + " |")
    print()
    for r in results:
        model = r.get("transfer", {}).get("cost_model")
        if not model:
            continue
        print(f"Cost model ({db(r)} run; each step alone on 64 MiB in one process, best of N):\n")
        print("| step | ms | MiB/s |")
        print("|---|---|---|")
        order = ["sha256 of", "sha256 per", "protobuf", "copy", "write", "read", "module"]
        for name, seconds in sorted(model.items(), key=lambda kv: next(
                (i for i, p in enumerate(order) if kv[0].startswith(p)), len(order))):
            print(f"| {name} | {seconds * 1000:.1f} | {64 / seconds:.0f} |")
        print()
        break


def listing(results: list[dict[str, Any]]) -> None:
    print("#### (b) List latency (ms; p50 and p95 over the repeats)\n")
    print("| db | query | p50 @ small | p50 @ large | p95 @ large | rows returned |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "list" not in r:
            continue
        small, large = r["list"]["small"], r["list"]["large"]
        for name, q in large["queries"].items():
            s = small["queries"][name]
            print(f"| {db(r)} | {name} | {s['p50_s'] * 1000:.1f} (n={small['modules']}) | "
                  f"{q['p50_s'] * 1000:.1f} (n={large['modules']}) | {q['p95_s'] * 1000:.1f} | "
                  f"{q['rows'][0]} |")
    print()
    for r in results:
        if "list" in r:
            L = r["list"]
            print(f"- {db(r)}: filled by {L['method']}: "
                  f"{L['large']['modules']} modules at {L['fill_rate_per_s']:.1f} modules/s "
                  f"(upload + approval, 4 clients); store {L['store_bytes'] / MIB:.0f} MiB.")
    print()


def concurrent(results: list[dict[str, Any]]) -> None:
    print("#### (c) Concurrent clients\n")
    print("| db | clients | uploads | verified downloads | wall s | MiB/s (up+down) | uploads/s | "
          "downloads/s | upload p50/p95 ms | download p50/p95 ms | lost | corrupt |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "concurrent" not in r:
            continue
        c = r["concurrent"]
        up, down = c["latency_s"]["upload"], c["latency_s"]["download"]
        lost = len(c["lost_in_listing"]) + len(c["lost_blobs"])
        corrupt = len(c["corrupt_downloads"]) + len(c["corrupt_blobs"])
        print(f"| {db(r)} | {c['clients']} | {c['uploads']} | {c['downloads']} | "
              f"{c['wall_s']:.1f} | {c['throughput_MiB_s']:.1f} | {c['uploads_per_s']:.1f} | "
              f"{c['downloads_per_s']:.1f} | {up['p50'] * 1000:.0f}/{up['p95'] * 1000:.0f} | "
              f"{down['p50'] * 1000:.0f}/{down['p95'] * 1000:.0f} | {lost} | {corrupt} |")
    print()


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(RESULTS.glob("*.json"),
                                                       key=lambda p: p.name != "sqlite.json")
    results = [json.loads(p.read_text()) for p in paths]
    for r in results:
        print(f"<!-- {db(r)}: `{r['command']}` -->")
    print()
    transfer(results)
    listing(results)
    concurrent(results)


if __name__ == "__main__":
    main()
