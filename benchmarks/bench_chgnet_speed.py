"""Speed of the CHGNet compose path, before and after the fast path, side by side in one run.

The fast path (``moma.backbones.chgnet.prefix``) caches each crystal's frozen prefix (radial and
angular bases, first atom convolution) for adapter models and skips CHGNet's last angle update,
whose output nothing reads. This benchmark runs the same compose (same task, split, strategy,
candidates, seed and budget) three times through the compose entry point (``moma.api.compose``):

- ``before``: fast path off (what every CHGNet result before it used);
- ``after (cold)``: fast path on, prefix cache empty (one compose on its own);
- ``after (warm)``: fast path on, the cache left by the previous run (a second strategy, lr or
  split on the same task in the same process, as ``amc_results.py`` and ``evaluate_task.py`` run
  them).

It prints wall time per stage, the validation and test MAE of each run (the fast path must not
change them beyond float rounding) and the ratios, and appends one JSON line to
``benchmarks/results/chgnet_speed.jsonl``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_chgnet_speed.py --task mp_eps_electronic``
(AMC adapter with the CHGNet adapter family built by ``amc_hub.py``; ``--strategy backbone-ft``
needs no family: fresh adapters on the base). ``--epochs 30`` is the results' budget.
"""

from __future__ import annotations

import argparse
import json
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
    modules = RUNS / "hub" / "chgnet-adapter"
    request = ComposeRequest(
        data=downstream_task_path(args.task), out=folder, backbone="chgnet", kind="adapter",
        strategy=args.strategy, split=args.split,
        candidates=[modules] if get_strategy(args.strategy).needs_modules else [],
        exclude_tasks=leaking_sources(args.task, args.split),
        train=TrainConfig(epochs=args.epochs, batch_size=32, lr=args.lr, head_lr_factor=10.0,
                          patience=10, seed=0),
        seed=0)
    with fast_path(fast):
        tick = time.perf_counter()
        report = compose_run(request).report
        wall = time.perf_counter() - tick
    t = report["timings"]
    return {"wall_s": wall, "select_s": t.get("select_s", 0.0),
            "fine_tune_s": t.get("fine_tune_s", 0.0), "epochs_run": report["epochs_run"],
            "val_mae": report["metrics"]["val_mae"], "test_mae": report["metrics"]["test_mae"],
            "cache_mb": CACHE.nbytes / 2**20, "cache_hits": CACHE.hits,
            "cache_misses": CACHE.misses}


def interleaved(args: argparse.Namespace) -> None:
    """Per-batch cost, fast path off and on alternately on the same batches (robust to the load
    of a shared machine drifting during a long run): training step and encoding."""
    from moma.amc.compose import with_state
    from moma.backbones.adapters import freeze_for_adapter_training
    from moma.backbones.registry import get_backbone
    from moma.data.prepared import prepare
    from moma.data.readers import load_dataset
    from moma.training.loop import batches, set_train_mode

    backbone = get_backbone("chgnet")
    data = prepare(load_dataset(downstream_task_path(args.task)), backbone, args.split)
    graphs, _ = data.part("train")
    state, _ = backbone.pretrained_base()
    model = with_state(backbone, state, "adapter", None)
    freeze_for_adapter_training(model)
    chosen = batches(backbone, graphs, range(len(graphs)), 32)[: args.interleaved]
    CACHE.clear()
    with fast_path(True), torch.no_grad():  # fill the cache (a warm run's state)
        for _, batch in chosen:
            model(batch)
    times: dict[str, list[float]] = {"train_slow": [], "train_fast": [], "encode_slow": [],
                                     "encode_fast": []}
    for _, batch in chosen:
        for fast in (False, True):
            name = "fast" if fast else "slow"
            with fast_path(fast):
                set_train_mode(model, adapter_only=True)
                tick = time.perf_counter()
                model(batch).sum().backward()
                times[f"train_{name}"].append(time.perf_counter() - tick)
                model.zero_grad(set_to_none=True)
                with torch.no_grad():
                    tick = time.perf_counter()
                    model.embed(batch)
                    times[f"encode_{name}"].append(time.perf_counter() - tick)
    ratio = {k: float(np.median(np.array(times[f"{k}_slow"]) / np.array(times[f"{k}_fast"])))
             for k in ("train", "encode")}
    print(f"interleaved, {len(chosen)} batches of 32 from {args.task}: median per-batch "
          f"before/after {ratio['train']:.2f}x training step, {ratio['encode']:.2f}x encoding "
          f"(medians s: train {np.median(times['train_slow']):.2f} -> "
          f"{np.median(times['train_fast']):.2f}, encode {np.median(times['encode_slow']):.2f} "
          f"-> {np.median(times['encode_fast']):.2f})")
    record = {"task": args.task, "mode": "interleaved", "batches": len(chosen), "ratio": ratio,
              "median_s": {k: float(np.median(v)) for k, v in times.items()},
              "threads": torch.get_num_threads(),
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
    args = parser.parse_args()
    if args.interleaved:
        interleaved(args)
        return
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-chgnet-") as tmp:
        CACHE.clear()
        rows["before"] = one_run(args, False, Path(tmp) / "before")
        CACHE.clear()
        rows["after_cold"] = one_run(args, True, Path(tmp) / "cold")
        rows["after_warm"] = one_run(args, True, Path(tmp) / "warm")
    for name, row in rows.items():
        print(f"{name:11s} wall {row['wall_s']:7.1f} s (select {row['select_s']:6.1f}, fine-tune "
              f"{row['fine_tune_s']:7.1f}), epochs {row['epochs_run']}, val MAE "
              f"{row['val_mae']:.5g}, test MAE {row['test_mae']:.5g}")
    before = rows["before"]["wall_s"]
    ratios = {"cold": before / rows["after_cold"]["wall_s"],
              "warm": before / rows["after_warm"]["wall_s"]}
    print(f"speed-up before/after: {ratios['cold']:.2f}x cold, {ratios['warm']:.2f}x warm "
          "(goal >= 2x)")
    record = {"task": args.task, "split": args.split, "strategy": args.strategy,
              "kind": "adapter", "epochs": args.epochs, "lr": args.lr, "runs": rows,
              "speedup": ratios, "threads": torch.get_num_threads(),
              "machine": platform.machine(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
