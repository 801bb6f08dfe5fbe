"""Fair fine-tuning settings for the CHGNet comparison: one lr per strategy, chosen on validation.

The seed0 CHGNet table compared AMC with baselines at the paper's lr 8e-5, while the hub's
modules had been trained at 3e-4 and 1e-3; a control showed that half of AMC's margin was the
learning rate. Here every strategy gets the same tuning budget:

- strategies: ``backbone-ft`` (full), ``adapter-ft`` (fresh adapters on the base), ``amc-full``,
  ``amc-adapter``; all with the same fine-tuning budget (30 epochs, patience 10, batch 32, head
  lr x10, seed 0);
- grid: lr in {1e-4, 3e-4, 1e-3} (``lr_grid.GRID``), every (strategy, lr) on the tuning tasks
  (``lr_grid.TUNING_TASKS``, 4 of the 11) on split seed0;
- choice: for each strategy the lr with the lowest mean over the tuning tasks of
  ``val_mae / min(val_mae over the grid)`` (scale-free, so no task dominates), validation only,
  made as soon as that strategy's own grid is complete (``lr_grid.choose``); ``--stage choose``
  writes ``benchmarks/results/amc/full/chgnet/lr_choice.json`` with every number behind it;
- then every strategy runs with its chosen lr on every task and split (``--stage tuned``), and
  few-shot with the same lr on a seeded subset of the training split (``--train-size 100``,
  ``10``; the subset depends on the split only, so every strategy sees the same crystals).

The test MAE in each result file was computed once, at the end of that run; nothing here reads
it. Seed0 runs of the grid are reused by the tuned stage (same label, same file).

Run (resumable, every finished run is a file):
``python benchmarks/amc_tuning.py --stage grid`` then ``--stage choose`` then
``--stage tuned --splits seed0,seed1,seed2 [--train-size N]`` (``--tasks`` to restrict).
Checks of the tooling: ``--results DIR`` (another results root), ``--modules DIR`` (compose from
this folder instead of the hub family), ``--epochs N``, ``--lr LR`` (instead of the choice).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amc_hub import DOWNSTREAM
from amc_results import RESULTS, Run, add_check_options, execute
from lr_grid import GRID, PROFILE, STRATEGY_NAMES, TUNING_TASKS, choose, choose_one, grid_label

from moma.atomic_io import write_json

STRATEGIES: dict[str, Run] = {
    "backbone-ft": Run("chgnet", "backbone-ft"),
    "adapter-ft": Run("chgnet", "backbone-ft", kind="adapter"),
    "amc-full": Run("chgnet", "amc"),
    "amc-adapter": Run("chgnet", "amc", kind="adapter"),
}
assert tuple(STRATEGIES) == STRATEGY_NAMES
CHOICE = RESULTS / PROFILE / "chgnet" / "lr_choice.json"


def grid_run(strategy: str, lr: float) -> Run:
    """``strategy`` at ``lr``, labelled ``<strategy>-lr<lr>`` (e.g. amc-adapter-lr1e-3)."""
    base = STRATEGIES[strategy]
    return Run(base.hub, base.strategy, kind=base.kind, lr=lr, label=grid_label(strategy, lr))


def chosen_lr(strategy: str, results: Path = RESULTS) -> float:
    """The lr chosen for ``strategy`` on seed0 validation (its grid must be complete)."""
    one = choose_one(strategy, results=results)
    if one is None:
        raise SystemExit(f"the lr grid of {strategy} is not complete under {results}: run "
                         f"`amc_tuning.py --stage grid --strategies {strategy}` first")
    return float(one["lr"])


def main() -> None:
    parser = argparse.ArgumentParser(description="CHGNet lr tuning on seed0 validation.")
    parser.add_argument("--stage", choices=["grid", "choose", "tuned"], required=True)
    parser.add_argument("--tasks", default="")
    parser.add_argument("--splits", default="seed0")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--train-size", type=int, default=None,
                        help="few-shot: a seeded subset of N training structures")
    add_check_options(parser, "compose from this folder instead of the hub family")
    parser.add_argument("--lr", type=float, default=None,
                        help="this lr instead of the choice (checks)")
    args = parser.parse_args()
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise SystemExit(f"--strategies: unknown {sorted(unknown)}; choose from "
                         + ", ".join(STRATEGIES))
    tasks = args.tasks.split(",") if args.tasks else None

    def run(strategy: str, lr: float, task: str, split: str) -> None:
        modules = [args.modules] if args.modules and strategy.startswith("amc") else None
        execute(grid_run(strategy, lr), task, split, args.train_size, PROFILE,
                results=args.results, epochs=args.epochs, candidates=modules)

    if args.stage == "grid":
        for task in tasks or TUNING_TASKS:
            for strategy in strategies:
                for lr in GRID:
                    run(strategy, lr, task, "seed0")
    elif args.stage == "choose":
        choice = choose(results=args.results)
        write_json(args.results / PROFILE / "chgnet" / "lr_choice.json", choice)
        json.dump({s: v["lr"] for s, v in choice["strategies"].items()}, sys.stdout)
        print()
        if set(strategies) - set(choice["strategies"]):
            raise SystemExit("lr grid incomplete for " + ", ".join(
                f"{s} ({n} runs missing)" for s, n in choice["pending"].items()
                if s in strategies))
    else:
        lrs = {s: args.lr or chosen_lr(s, args.results) for s in strategies}
        for split in args.splits.split(","):
            for task in tasks or DOWNSTREAM:
                for strategy in strategies:
                    run(strategy, lrs[strategy], task, split)
    print(json.dumps({"done": True, "stage": args.stage}))


if __name__ == "__main__":
    main()
