"""The tuned CHGNet sections of ``docs/results.md`` (called by ``results_table.py``).

Works on whatever result files exist: a missing run is a ``pending`` cell, a statement over
incomplete rows says so, and the goal is only called met or missed when every task has its
planned splits. Read here: the runs of ``amc_tuning.py`` (``lr_grid.run_file``), the lr choice
(``lr_grid.choose``, recomputed from the grid files), the module-scaling summary written by
``module_scaling.py`` and ``benchmarks/results/chgnet_speed.jsonl``.

Comparison: the best single-base fine-tune of a task (backbone-ft or adapter-ft, both at their
tuned lr) is the one with the lower mean *validation* MAE over the splits where AMC ran too;
only then are test MAEs read. Paired test: Wilcoxon signed-rank test (two-sided, scipy) on
log(MAE_AMC / MAE_best single) over every (task, split) pair where both ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from lr_grid import GRID, RESULTS, STRATEGY_NAMES, TUNING_TASKS, choose, lr_label, run_file
from scipy.stats import wilcoxon

HERE = Path(__file__).resolve().parent
SPEED = HERE / "results" / "chgnet_speed.jsonl"
SINGLE = ("backbone-ft", "adapter-ft")
AMC = ("amc-adapter", "amc-full")
SPLITS = ("seed0", "seed1", "seed2", "seed3", "seed4")
PLANNED_SPLITS = 3
GOAL_TASKS, GOAL_CHANGE = 0.8, -0.10
GOAL = ("AMC beats the best tuned single-base fine-tune on >= 80 % of the tasks with >= 10 % "
        "lower mean test MAE (seeds 0-2)")
FEW_SHOT = (100, 10)

# task -> strategy -> split -> (val MAE, test MAE)
Cells = dict[str, dict[str, dict[str, tuple[float, float]]]]


def collect(choice: dict[str, Any], tasks: list[str], train_size: int | None = None,
            results: Path = RESULTS) -> Cells:
    """Validation and test MAE of each strategy's run at its chosen lr, by task and split."""
    cells: Cells = {}
    for strategy, entry in choice["strategies"].items():
        for task in tasks:
            for split in SPLITS:
                path = run_file(strategy, entry["lr"], task, split, train_size, results)
                if path.is_file():
                    m = json.loads(path.read_text())["metrics"]
                    cells.setdefault(task, {}).setdefault(strategy, {})[split] = (
                        m["val_mae"], m["test_mae"])
    return cells


def best_single(row: dict[str, dict[str, tuple[float, float]]], splits: set[str]) -> str | None:
    """backbone-ft or adapter-ft, whichever has the lower mean validation MAE on ``splits``."""
    scores = {s: np.mean([row[s][k][0] for k in splits]) for s in SINGLE
              if s in row and splits <= set(row[s])}
    return min(scores, key=lambda s: scores[s]) if len(scores) == len(SINGLE) else None


def compare(cells: Cells, amc: str) -> dict[str, Any]:
    """AMC against the best single-base fine-tune, per task and over (task, split) pairs."""
    per_task: dict[str, dict[str, Any]] = {}
    logs: list[float] = []
    for task, row in cells.items():
        if amc not in row:
            continue
        splits = set(row[amc])
        single = best_single(row, splits)
        if single is None:
            continue
        a = float(np.mean([row[amc][s][1] for s in splits]))
        b = float(np.mean([row[single][s][1] for s in splits]))
        per_task[task] = {"single": single, "amc": a, "best": b, "rel": (a - b) / b,
                          "splits": len(splits)}
        logs += [float(np.log(row[amc][s][1] / row[single][s][1])) for s in sorted(splits)]
    won = sum(v["rel"] < 0 for v in per_task.values())
    rel = float(np.mean([v["rel"] for v in per_task.values()])) if per_task else float("nan")
    if len(logs) >= 6:
        test = wilcoxon(logs)
        stat, p = float(test.statistic), float(test.pvalue)
    else:
        stat, p = float("nan"), float("nan")
    return {"per_task": per_task, "won": won, "n": len(per_task), "rel": rel,
            "pairs": len(logs), "pairs_won": sum(v < 0 for v in logs), "stat": stat, "p": p}


def fmt(values: list[float]) -> str:
    if not values:
        return "pending"
    text = f"{np.mean(values):.4g}"
    if len(values) > 1:
        text += f" ± {np.std(values, ddof=1):.2g}"
    return text + f" ({len(values)})"


def goal_line(c: dict[str, Any], tasks: list[str], amc: str) -> str:
    complete = [t for t, v in c["per_task"].items() if v["splits"] >= PLANNED_SPLITS]
    so_far = (f"{c['won']} of {c['n']} tasks, mean relative test MAE change "
              f"{100 * c['rel']:+.1f} %" if c["n"] else "no task yet")
    test = (f"Wilcoxon signed-rank test (two-sided) on log MAE ratios over {c['pairs']} "
            f"(task, split) pairs, AMC lower on {c['pairs_won']}: W = {c['stat']:.0f}, "
            f"p = {c['p']:.3g}" if c["pairs"] >= 6 else
            f"paired test pending ({c['pairs']} (task, split) pairs; at least 6 needed)")
    if len(complete) < len(tasks):
        verdict = (f"pending: {len(complete)} of {len(tasks)} tasks have AMC and both "
                   f"baselines on {PLANNED_SPLITS} splits")
    else:
        met = c["won"] >= GOAL_TASKS * c["n"] and c["rel"] <= GOAL_CHANGE
        verdict = "met" if met else "not met"
    return (f"- {amc} against the best tuned single-base fine-tune (picked per task on "
            f"validation): {so_far}; {test}. Goal ({GOAL}): {verdict}.")


def grid_section(choice: dict[str, Any], results: Path) -> list[str]:
    """Seed0 validation MAE of every grid run (pending where missing) and each choice."""
    lines = [f"lr grid: seed0 validation MAE on the {len(TUNING_TASKS)} tuning tasks (the test "
             "MAE of these runs is not used for any choice); score = "
             f"{choice['criterion']} (lower is better), once the strategy's grid is complete:",
             "", "| strategy | lr | " + " | ".join(TUNING_TASKS) + " | score |",
             "|---" * (len(TUNING_TASKS) + 3) + "|"]
    for strategy in STRATEGY_NAMES:
        chosen = choice["strategies"].get(strategy)
        for lr in GRID:
            cells = []
            for task in TUNING_TASKS:
                path = run_file(strategy, lr, task, results=results)
                cells.append(f"{json.loads(path.read_text())['metrics']['val_mae']:.4g}"
                             if path.is_file() else "pending")
            if chosen is None:
                score = "pending"
            else:
                score = f"{chosen['score'][lr_label(lr)]:.3f}"
                if chosen["lr"] == lr:
                    score = f"**{score} (chosen)**"
            lines.append(f"| {strategy} | {lr_label(lr)} | " + " | ".join(cells)
                         + f" | {score} |")
    pending = [f"{s} ({n} of {len(GRID) * len(TUNING_TASKS)} runs missing)"
               for s, n in choice["pending"].items()]
    if pending:
        lines += ["", "Grid not complete yet for: " + ", ".join(pending) + "."]
    return [*lines, ""]


def tuned_table(cells: Cells, choice: dict[str, Any], tasks: list[str], title: str,
                goal: bool = True) -> list[str]:
    """One row per task (pending cells where a run is missing), AMC adapter against the best
    single-base fine-tune picked on validation, and the goal's statement."""
    heads = [f"{s} (lr {lr_label(choice['strategies'][s]['lr'])})"
             if s in choice["strategies"] else f"{s} (lr pending)" for s in STRATEGY_NAMES]
    c = compare(cells, "amc-adapter")
    lines = [title, "", "| task | " + " | ".join(heads)
             + " | best single (on val) | amc-adapter vs best |",
             "|---" * (len(heads) + 3) + "|"]
    for task in tasks:
        row = cells.get(task, {})
        versus = c["per_task"].get(task)
        lines.append(f"| {task} | " + " | ".join(
            fmt([t for _, t in row.get(s, {}).values()]) for s in STRATEGY_NAMES) + " | "
            + (f"{versus['single']} | {100 * versus['rel']:+.1f} % ({versus['splits']})"
               if versus else "pending | pending") + " |")
    lines.append("")
    if goal:
        lines += [goal_line(compare(cells, amc), tasks, amc) for amc in AMC]
    return [*lines, ""]


def few_shot_section(choice: dict[str, Any], tasks: list[str], results: Path) -> list[str]:
    lines = ["### Few-shot on CHGNet (same lrs; a seeded subset of the training split)", ""]
    margins = []
    for size in (None, *FEW_SHOT):
        cells = collect(choice, tasks, size, results)
        c = compare(cells, "amc-adapter")
        margins.append((size, c))
        if size is not None and cells:
            lines += tuned_table(cells, choice, tasks, f"N = {size} training structures "
                                 "(test MAE, mean ± std over splits (n))", goal=False)
        elif size is not None:
            lines += [f"N = {size}: pending (no run yet).", ""]
    lines.append("Does the margin grow as N shrinks? amc-adapter against the best tuned "
                 "single-base fine-tune:")
    for size, c in margins:
        name = "all training data" if size is None else f"N = {size}"
        test = f", Wilcoxon p = {c['p']:.3g}" if c["pairs"] >= 6 else ""
        lines.append(f"- {name}: " + (f"{c['won']} of {c['n']} tasks, {100 * c['rel']:+.1f} % "
                                      f"mean relative change ({c['pairs']} (task, split) "
                                      f"pairs{test})" if c["n"] else "pending"))
    return [*lines, ""]


def scaling_section(results: Path) -> list[str]:
    summary = results / "scaling" / "chgnet" / "summary.json"
    lines = ["### Module scaling (`benchmarks/module_scaling.py`, CHGNet adapter family, seed0)",
             ""]
    if not summary.is_file():
        return [*lines, "Pending: no module-scaling run yet (it runs once the adapter family and "
                "the amc-adapter lr exist).", ""]
    data = json.loads(summary.read_text())
    ks = sorted({int(k) for d in data["tasks"].values() for k in d["points"]})
    lines += ["![module scaling](figures/module_scaling.png)", "",
              "Test MAE, mean over draws (draws); the largest k of a row is the whole pool "
              "(the tuned AMC run):", "",
              "| task | pool | " + " | ".join(f"k = {k}" for k in ks)
              + " | " + " | ".join(data["base_labels"]) + " |",
              "|---" * (len(ks) + 2 + len(data["base_labels"])) + "|"]
    for task, d in data["tasks"].items():
        points = {int(k): v for k, v in d["points"].items()}
        lines.append(f"| {task} | {d['pool']} | " + " | ".join(
            f"{np.mean(points[k]):.4g} ({len(points[k])})" if k in points else "-"
            for k in ks) + " | " + " | ".join(
            f"{d['bases'][b]:.4g}" if b in d["bases"] else "pending"
            for b in data["base_labels"]) + " |")
    return [*lines, ""]


def speed_section() -> list[str]:
    if not SPEED.is_file():
        return []
    records = [json.loads(line) for line in SPEED.read_text().splitlines()]
    lines = ["## Speed of the CHGNet path (`benchmarks/bench_chgnet_speed.py`)", ""]
    compose = [r for r in records if r.get("mode") == "compose"]
    if compose:
        lines += ["Whole compose through `moma.api.compose`, fast path off (before) and on "
                  "(after, empty prefix cache: a compose on its own), run alternately in one "
                  "process, one thread, on the shared 2-core machine; sums over the rounds. "
                  "The fast path is the per-crystal prefix cache plus the fused interaction "
                  "layers (`moma.backbones.chgnet.fused`).", "",
                  "| task | strategy | epochs | candidates | rounds | before wall / CPU s | "
                  "after wall / CPU s | ratio wall | ratio CPU | encode ratio | fine-tune "
                  "ratio | test MAE before / after | load (1 min) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rec in compose:
            before, after, ratio = rec["runs"]["before"], rec["runs"]["after"], rec["ratio"]
            lines.append(
                f"| {rec['task']} | {rec['strategy']} ({rec['kind']}) | {rec['epochs']} | "
                f"{before[0]['n_candidates']} | {len(before)} | "
                f"{sum(r['wall_s'] for r in before):.0f} / {sum(r['cpu_s'] for r in before):.0f}"
                f" | {sum(r['wall_s'] for r in after):.0f} / "
                f"{sum(r['cpu_s'] for r in after):.0f} | {ratio['wall']:.2f}x | "
                f"{ratio['cpu']:.2f}x | {ratio.get('select_encode_s', float('nan')):.2f}x | "
                f"{ratio.get('fine_tune_s', float('nan')):.2f}x | "
                + ", ".join(f"{r['test_mae']:.5g}" for r in before) + " / "
                + ", ".join(f"{r['test_mae']:.5g}" for r in after) + " | "
                + " / ".join(load.split()[0] for load in rec["load"]) + " |")
        lines.append("")
    inter = [r for r in records if r.get("mode") == "interleaved" and "train_fast_cpu" in
             r["ratio"]]
    if inter:
        lines += ["Per batch of 32, fast path off, prefix cache only, and the whole fast path "
                  "alternately on the same batches (`--interleaved`; medians of per-batch "
                  "ratios, CPU time, robust to the machine's load drifting):", "",
                  "| task | batches | training step CPU s off / prefix / fast | ratio CPU (wall) "
                  "| encoding CPU s off / prefix / fast | ratio CPU (wall) |",
                  "|---|---|---|---|---|---|"]
        for rec in inter:
            m, ratio = rec["median_s"], rec["ratio"]
            cells = [f"{m[f'{part}_off_cpu']:.3f} / {m[f'{part}_prefix_cpu']:.3f} / "
                     f"{m[f'{part}_fast_cpu']:.3f} | {ratio[f'{part}_fast_cpu']:.2f}x "
                     f"({ratio[f'{part}_fast_wall']:.2f}x)" for part in ("train", "encode")]
            lines.append(f"| {rec['task']} | {rec['batches']} | {cells[0]} | {cells[1]} |")
        lines.append("")
    lines += ["Earlier measurements (prefix cache only; before the fused layers):", "",
              "| task | strategy | epochs | before s | cold s | warm s | cold ratio | warm ratio "
              "| test MAE before / after |", "|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        if rec.get("mode") is None:
            runs = rec["runs"]
            lines.append(
                f"| {rec['task']} | {rec['strategy']} ({rec['kind']}) | {rec['epochs']} | "
                f"{runs['before']['wall_s']:.0f} | {runs['after_cold']['wall_s']:.0f} | "
                f"{runs['after_warm']['wall_s']:.0f} | {rec['speedup']['cold']:.2f}x | "
                f"{rec['speedup']['warm']:.2f}x | {runs['before']['test_mae']:.5g} / "
                f"{runs['after_cold']['test_mae']:.5g} |")
    lines += ["", "Whole runs measured one after another drift with the shared machine's load; the "
              "2-epoch row's MAE difference is the first-run generator bug described in the "
              "notes (fixed after it was measured), not the fast path.", "",
              "| task | batches | training step s before -> after | ratio | encoding s "
              "before -> after | ratio |", "|---|---|---|---|---|---|"]
    for rec in records:
        if rec.get("mode") == "interleaved" and "train" in rec["ratio"]:
            m = rec["median_s"]
            lines.append(f"| {rec['task']} | {rec['batches']} | {m['train_slow']:.2f} -> "
                         f"{m['train_fast']:.2f} | {rec['ratio']['train']:.2f}x | "
                         f"{m['encode_slow']:.2f} -> {m['encode_fast']:.2f} | "
                         f"{rec['ratio']['encode']:.2f}x |")
    return [*lines, ""]


def tuned_sections(tasks: list[str], results: Path = RESULTS) -> list[str]:
    choice = choose(results=results)
    cells = collect(choice, tasks, None, results)
    return [*speed_section(), "## CHGNet with tuned fine-tuning lr (chosen on seed0 validation)",
            "", "Protocol (`benchmarks/amc_tuning.py`): backbone-ft (full), adapter-ft (fresh "
            "adapters on the base), AMC full and AMC adapter, each with the same budget (30 "
            "epochs, patience 10, batch 32, head lr x10, seed 0) and the same lr grid "
            f"({', '.join(lr_label(g) for g in GRID)}) on seed0 of {', '.join(TUNING_TASKS)}; "
            "each strategy's lr is then used on every task and split. The paper-lr table "
            "below stays as the second table.", "",
            *grid_section(choice, results),
            *tuned_table(cells, choice, tasks, "Tuned test MAE, mean ± std over splits "
                         "(n = splits done; 3 planned, seeds 3-4 where time allows)"),
            *few_shot_section(choice, tasks, results), *scaling_section(results)]
