"""The CHGNet learning-rate grid and the choice made from it, read from result files only.

Light on purpose (no torch): ``amc_tuning.py`` runs the grid and the tuned runs, while
``results_tuned.py`` and ``module_scaling.py`` only need to know which lr each strategy got and
where the files are. The choice for a strategy exists as soon as that strategy's own grid is
complete; it never depends on another strategy's runs, so the AMC lane and the baseline lane do
not wait for each other, and every strategy still gets the same grid on the same tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "amc"
PROFILE = "full"
GRID = (1e-4, 3e-4, 1e-3)
# Four tasks (the issue allows a stated subset of >= 4): small to mid-size, one per property
# family (2D formation energy, 2D dielectric, 2D band gap, MP polycrystalline dielectric). The
# largest tuning task of the first plan, mp_eps_electronic (907 training crystals, about a
# third of the grid's cost), was dropped; its property family stays through mp_poly_total.
TUNING_TASKS = ("jarvis_2d_eform", "jarvis_2d_dielectric_opt", "jarvis_2d_gap_tbmbj",
                "mp_poly_total")
STRATEGY_NAMES = ("backbone-ft", "adapter-ft", "amc-full", "amc-adapter")
CRITERION = "mean over tasks of val_mae / best val_mae of the strategy's grid on that task"


def lr_label(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def grid_label(strategy: str, lr: float) -> str:
    """The run label of ``strategy`` at ``lr`` (e.g. amc-adapter-lr1e-3)."""
    return f"{strategy}-lr{lr_label(lr)}"


def run_file(strategy: str, lr: float, task: str, split: str = "seed0",
             train_size: int | None = None, results: Path = RESULTS) -> Path:
    """Where ``amc_results.result_path`` puts that CHGNet run (a test keeps the two in step)."""
    size = f"n{train_size}" if train_size else "all"
    return (results / PROFILE / "chgnet" / task
            / f"{split}-{size}-{grid_label(strategy, lr)}.json")


def grid_val(strategy: str, tasks: tuple[str, ...] = TUNING_TASKS, results: Path = RESULTS
             ) -> tuple[dict[str, dict[str, float]], list[Path]]:
    """Seed0 validation MAE of every grid run of ``strategy`` that exists, and the missing files."""
    val: dict[str, dict[str, float]] = {}
    missing: list[Path] = []
    for task in tasks:
        for lr in GRID:
            path = run_file(strategy, lr, task, results=results)
            if path.is_file():
                val.setdefault(task, {})[lr_label(lr)] = json.loads(
                    path.read_text())["metrics"]["val_mae"]
            else:
                missing.append(path)
    return val, missing


def choose_one(strategy: str, tasks: tuple[str, ...] = TUNING_TASKS,
               results: Path = RESULTS) -> dict[str, Any] | None:
    """The lr of ``strategy`` from its complete seed0 grid (None while any run is missing)."""
    val, missing = grid_val(strategy, tasks, results)
    if missing:
        return None
    score = {lr_label(lr): sum(val[t][lr_label(lr)] / min(val[t].values()) for t in tasks)
             / len(tasks) for lr in GRID}
    best = min(GRID, key=lambda lr: score[lr_label(lr)])
    return {"lr": best, "label": grid_label(strategy, best), "score": score, "val_mae": val}


def choose(strategies: tuple[str, ...] = STRATEGY_NAMES, tasks: tuple[str, ...] = TUNING_TASKS,
           results: Path = RESULTS) -> dict[str, Any]:
    """Every choice that can be made now; strategies whose grid is incomplete are ``pending``."""
    choice: dict[str, Any] = {"grid": list(GRID), "tasks": list(tasks), "split": "seed0",
                              "criterion": CRITERION, "strategies": {}, "pending": {}}
    for strategy in strategies:
        one = choose_one(strategy, tasks, results)
        if one is None:
            choice["pending"][strategy] = len(grid_val(strategy, tasks, results)[1])
        else:
            choice["strategies"][strategy] = one
    return choice
