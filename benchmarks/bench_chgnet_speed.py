"""Speed of the CHGNet compose path, before and after the fast path, side by side in one run.

The fast path (``MOMA_CHGNET_FAST``, on by default) is two things, both for CHGNet only:

- the frozen prefix (radial and angular bases, first atom convolution) of an adapter model is
  cached per crystal (``moma.backbones.chgnet.prefix``) and CHGNet's last angle update, whose
  output nothing reads, is skipped;
- the interaction layers apply their first linear layer before the gather
  (``moma.backbones.chgnet.fused``), for adapter and full models alike.

Whole compose (default): the same compose (task, split, strategy, candidates, seed, budget)
through the compose entry point (``moma.api.compose``), alternately ``before`` (fast path off:
what every CHGNet result before it used) and ``after`` (fast path on, prefix cache emptied
first: one compose on its own), ``--rounds`` times, so both see the same machine load. It prints
wall and CPU time of the whole compose and of its stages, the validation and test MAE of every
run (the fast path must leave them the same within float noise) and the before/after ratios,
and appends one JSON line to ``benchmarks/results/chgnet_speed.jsonl``.

Per batch (``--interleaved N``): training step and encoding on the same N batches of 32,
fast path off, prefix cache only, and the whole fast path, alternately; medians of per-batch
ratios of CPU time (robust to a shared machine's drifting load) and wall time.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_chgnet_speed.py --task mp_eps_electronic``
(AMC adapter with the CHGNet adapter family in ``$MOMA_RUNS/hub/chgnet-adapter`` built by
``amc_hub.py``; ``--strategy backbone-ft`` needs no family: fresh adapters on the base).
``--epochs 30`` is the results' budget.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from amc_hub import RUNS
from amc_results import leaking_sources

from moma.amc.registry import get_strategy, strategies
from moma.api.compose import ComposeRequest
from moma.api.compose import run as compose_run
from moma.backbones.chgnet.prefix import CACHE, fast_path
from moma.paths import downstream_task_path
from moma.training.loop import TrainConfig

OUT = Path(__file__).resolve().parent / "results" / "chgnet_speed.jsonl"


def one_run(args: argparse.Namespace, fast: bool, folder: Path) -> dict[str, Any]:
    """One compose, fast path on or off, with an empty prefix cache (a compose on its own)."""
    modules = RUNS / "hub" / "chgnet-adapter"
    request = ComposeRequest(
        data=downstream_task_path(args.task), out=folder, backbone="chgnet", kind="adapter",
        strategy=args.strategy, split=args.split,
        candidates=[modules] if get_strategy(args.strategy).needs_modules else [],
        exclude_tasks=leaking_sources(args.task, args.split),
        train=TrainConfig(epochs=args.epochs, batch_size=32, lr=args.lr, head_lr_factor=10.0,
                          patience=10, seed=0),
        seed=0, guard=False)  # as amc_results.py runs every strategy
    CACHE.clear()
    with fast_path(fast):
        tick, cpu = time.perf_counter(), time.process_time()
        report = compose_run(request).report
        wall, cpu = time.perf_counter() - tick, time.process_time() - cpu
    t = report["timings"]
    stages = {key: float(value) for key, value in t.items() if key.endswith("_s")}
    return {"wall_s": wall, "cpu_s": cpu, "stages_s": stages,
            "other_s": wall - sum(v for k, v in stages.items()
                                  if k in ("featurize_s", "select_s", "merge_s", "fine_tune_s")),
            "epochs_run": report["epochs_run"], "n_candidates": len(report["candidates"]),
            "val_mae": report["metrics"]["val_mae"], "test_mae": report["metrics"]["test_mae"],
            "cache_mb": CACHE.nbytes / 2**20, "cache_hits": CACHE.hits,
            "cache_misses": CACHE.misses}


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


VARIANTS = (("off", False, False), ("prefix", True, False), ("fast", True, True))


def interleaved(args: argparse.Namespace) -> None:
    """Per-batch cost on the same batches, fast path off, prefix cache only and the whole fast
    path, alternately (robust to the load of a shared machine drifting during the run)."""
    from moma.amc.compose import with_state
    from moma.backbones.adapters import freeze_for_adapter_training
    from moma.backbones.chgnet import fused
    from moma.backbones.registry import get_backbone
    from moma.data.prepared import prepare
    from moma.data.readers import load_dataset
    from moma.training.loop import batches, set_train_mode

    backbone = get_backbone("chgnet")
    data = prepare(load_dataset(downstream_task_path(args.task)), backbone, args.split)
    graphs, _ = data.part("train")
    pretrained = backbone.pretrained_base()
    assert pretrained is not None  # CHGNet ships its weights
    model = with_state(backbone, pretrained[0], "adapter", None)
    freeze_for_adapter_training(model)
    chosen = batches(backbone, graphs, range(len(graphs)), 32)[: args.interleaved]
    CACHE.clear()
    with fast_path(True), torch.no_grad():  # fill the cache (a warm run's state)
        for _, batch in chosen:
            model(batch)
    times: dict[str, list[float]] = {}
    for _, batch in chosen:
        for name, fast, fuse in VARIANTS:
            fused.set_enabled(fuse)
            with fast_path(fast):
                set_train_mode(model, adapter_only=True)
                for part in ("train", "encode"):
                    tick, cpu = time.perf_counter(), time.process_time()
                    if part == "train":
                        model(batch).sum().backward()
                    else:
                        with torch.no_grad():
                            model.embed(batch)
                    times.setdefault(f"{part}_{name}_cpu", []).append(time.process_time() - cpu)
                    times.setdefault(f"{part}_{name}_wall", []).append(
                        time.perf_counter() - tick)
                    model.zero_grad(set_to_none=True)
    fused.set_enabled(True)
    ratio = {f"{part}_{name}_{clock}": float(np.median(np.array(times[f"{part}_off_{clock}"])
                                                       / np.array(times[f"{part}_{name}_{clock}"])))
             for part in ("train", "encode") for name in ("prefix", "fast")
             for clock in ("cpu", "wall")}
    medians = {key: float(np.median(value)) for key, value in times.items()}
    for part in ("train", "encode"):
        print(f"{part:6s} median CPU s per batch of 32: off {medians[f'{part}_off_cpu']:.3f}, "
              f"prefix cache {medians[f'{part}_prefix_cpu']:.3f}, fast path "
              f"{medians[f'{part}_fast_cpu']:.3f}; before/after {ratio[f'{part}_fast_cpu']:.2f}x "
              f"CPU, {ratio[f'{part}_fast_wall']:.2f}x wall (prefix cache alone "
              f"{ratio[f'{part}_prefix_cpu']:.2f}x CPU)")
    record = {"task": args.task, "mode": "interleaved", "batches": len(chosen), "ratio": ratio,
              "median_s": medians, "threads": torch.get_num_threads(), "load": _load(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with OUT.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="mp_eps_electronic")
    parser.add_argument("--split", default="seed0")
    parser.add_argument("--strategy", default="amc", choices=sorted(strategies()))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=8e-5)
    parser.add_argument("--interleaved", type=int, default=0, metavar="BATCHES",
                        help="only the per-batch comparison, on this many training batches")
    parser.add_argument("--rounds", type=int, default=1,
                        help="before/after pairs of whole composes, run alternately")
    args = parser.parse_args()
    if args.interleaved:
        interleaved(args)
        return
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    loads = [_load()]
    with tempfile.TemporaryDirectory(prefix="bench-chgnet-") as tmp:
        for r in range(args.rounds):
            for name, fast in (("before", False), ("after", True)):
                row = one_run(args, fast, Path(tmp) / f"{name}{r}")
                runs[name].append(row)
                loads.append(_load())
                print(f"{name:6s} round {r}: wall {row['wall_s']:7.1f} s, CPU {row['cpu_s']:7.1f} s"
                      f" ({', '.join(f'{k} {v:.1f}' for k, v in row['stages_s'].items())}), "
                      f"epochs {row['epochs_run']}, val MAE {row['val_mae']:.5g}, test MAE "
                      f"{row['test_mae']:.5g}", flush=True)
    ratio = {"wall": _ratio(runs, lambda row: row["wall_s"]),
             "cpu": _ratio(runs, lambda row: row["cpu_s"])}
    for stage in runs["before"][0]["stages_s"]:
        ratio[stage] = _ratio(runs, lambda row, s=stage: row["stages_s"][s])
    print("before/after (goal >= 2x): " + ", ".join(
        f"{k} {v:.2f}x" for k, v in ratio.items() if np.isfinite(v)))
    print("test MAE before " + ", ".join(f"{row['test_mae']:.5g}" for row in runs["before"])
          + " | after " + ", ".join(f"{row['test_mae']:.5g}" for row in runs["after"])
          + f"; load averages {' / '.join(loads)}")
    record = {"task": args.task, "split": args.split, "strategy": args.strategy,
              "kind": "adapter", "epochs": args.epochs, "lr": args.lr, "mode": "compose",
              "runs": runs, "ratio": ratio, "load": loads, "threads": torch.get_num_threads(),
              "machine": platform.machine(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _ratio(runs: dict[str, list[dict[str, Any]]], value: Any) -> float:
    """Sum of the before runs over sum of the after runs (same number of each, interleaved)."""
    after = sum(value(row) for row in runs["after"])
    return float(sum(value(row) for row in runs["before"]) / after) if after > 0 else math.nan


if __name__ == "__main__":
    main()
