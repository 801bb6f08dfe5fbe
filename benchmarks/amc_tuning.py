"""Fair fine-tuning settings for the CHGNet comparison: one lr per strategy, chosen on validation.

The seed0 CHGNet table compared AMC with baselines at the paper's lr 8e-5, while the hub's
modules had been trained at 3e-4 and 1e-3; a control showed that half of AMC's margin was the
learning rate. Here every strategy gets the same tuning budget:

- strategies: ``backbone-ft`` (full), ``adapter-ft`` (fresh adapters on the base), ``amc-full``,
  ``amc-adapter``; all with the same fine-tuning budget (30 epochs, patience 10, batch 32, head
  lr x10, seed 0);
- grid: lr in {1e-4, 3e-4, 1e-3} (:data:`GRID`), every (strategy, lr) on the tuning tasks
  (:data:`TUNING_TASKS`, 5 of the 11, small to ~1,000 structures, every property family but the
  MP elastic pair) on split seed0;
- choice: for each strategy the lr with the lowest mean over the tuning tasks of
  ``val_mae / min(val_mae over the grid)`` (scale-free, so no task dominates), validation only;
  written to ``benchmarks/results/amc/full/chgnet/lr_choice.json`` with every number behind it;
- then every strategy runs with its chosen lr on every task and split (``--stage tuned``).

The test MAE in each result file was computed once, at the end of that run; nothing here reads
it. Seed0 runs of the grid are reused by the tuned stage (same label, same file).

Run (resumable, every finished run is a file):
``python benchmarks/amc_tuning.py --stage grid`` then ``--stage choose`` then
``--stage tuned --splits seed0,seed1,seed2`` (``--tasks`` to restrict).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from amc_hub import DOWNSTREAM
from amc_results import RESULTS, Run, execute, result_path

from moma.atomic_io import write_json

GRID = (1e-4, 3e-4, 1e-3)
TUNING_TASKS = ("jarvis_2d_eform", "jarvis_2d_dielectric_opt", "jarvis_2d_gap_tbmbj",
                "mp_poly_total", "mp_eps_electronic")
STRATEGIES: dict[str, Run] = {
    "backbone-ft": Run("chgnet", "backbone-ft"),
    "adapter-ft": Run("chgnet", "backbone-ft", kind="adapter"),
    "amc-full": Run("chgnet", "amc"),
    "amc-adapter": Run("chgnet", "amc", kind="adapter"),
}
PROFILE = "full"
CHOICE = RESULTS / PROFILE / "chgnet" / "lr_choice.json"


def lr_label(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def grid_run(strategy: str, lr: float) -> Run:
    """``strategy`` at ``lr``, labelled ``<strategy>-lr<lr>`` (e.g. amc-adapter-lr1e-3)."""
    base = STRATEGIES[strategy]
    return Run(base.hub, base.strategy, kind=base.kind, lr=lr,
               label=f"{strategy}-lr{lr_label(lr)}")


def choose(tasks: tuple[str, ...] = TUNING_TASKS) -> dict[str, Any]:
    """The lr per strategy from the seed0 validation MAEs of the grid (all runs must exist)."""
    choice: dict[str, Any] = {"grid": list(GRID), "tasks": list(tasks), "split": "seed0",
                              "criterion": "mean over tasks of val_mae / best val_mae of the "
                                           "strategy's grid on that task", "strategies": {}}
    for strategy in STRATEGIES:
        val: dict[str, dict[str, float]] = {}
        for task in tasks:
            for lr in GRID:
                path = result_path(grid_run(strategy, lr), task, "seed0", None, PROFILE)
                if not path.is_file():
                    raise SystemExit(f"{path} is missing: run --stage grid first")
                val.setdefault(task, {})[lr_label(lr)] = json.loads(
                    path.read_text())["metrics"]["val_mae"]
        score = {lr_label(lr): sum(val[t][lr_label(lr)] / min(val[t].values()) for t in tasks)
                 / len(tasks) for lr in GRID}
        best = min(GRID, key=lambda lr: score[lr_label(lr)])
        choice["strategies"][strategy] = {"lr": best, "label": grid_run(strategy, best).name,
                                          "score": score, "val_mae": val}
    return choice


def chosen_runs() -> list[Run]:
    if not CHOICE.is_file():
        raise SystemExit(f"{CHOICE} is missing: run --stage grid, then --stage choose")
    choice = json.loads(CHOICE.read_text())
    return [grid_run(s, float(v["lr"])) for s, v in choice["strategies"].items()]


def main() -> None:
    parser = argparse.ArgumentParser(description="CHGNet lr tuning on seed0 validation.")
    parser.add_argument("--stage", choices=["grid", "choose", "tuned"], required=True)
    parser.add_argument("--tasks", default="")
    parser.add_argument("--splits", default="seed0")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--train-size", type=int, default=None)
    args = parser.parse_args()
    strategies = [s for s in args.strategies.split(",") if s]
    if args.stage == "grid":
        for task in (args.tasks.split(",") if args.tasks else TUNING_TASKS):
            for strategy in strategies:
                for lr in GRID:
                    execute(grid_run(strategy, lr), task, "seed0", None, PROFILE)
    elif args.stage == "choose":
        choice = choose()
        write_json(CHOICE, choice)
        json.dump({s: v["lr"] for s, v in choice["strategies"].items()}, sys.stdout)
        print()
    else:
        runs = [r for r in chosen_runs() if r.name.rsplit("-lr", 1)[0] in strategies]
        for split in args.splits.split(","):
            for task in (args.tasks.split(",") if args.tasks else DOWNSTREAM):
                for run in runs:
                    execute(run, task, split, args.train_size, PROFILE)
    print(json.dumps({"done": True, "stage": args.stage}))


if __name__ == "__main__":
    main()
