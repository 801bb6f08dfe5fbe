"""The tuned CHGNet sections of ``docs/results.md`` (called by ``results_table.py``).

Reads the result files of ``amc_tuning.py`` (``benchmarks/results/amc/full/chgnet``), its
``lr_choice.json`` and ``benchmarks/results/chgnet_speed.jsonl``. The best single-base
fine-tune of a task (backbone-ft or adapter-ft, both at their tuned lr) is the one with the
lower mean *validation* MAE over the splits where AMC ran too; the comparison then reads test
MAEs. The paired test is a Wilcoxon signed-rank test on log(MAE_AMC / MAE_best) over every
(task, split) pair where both ran.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

HERE = Path(__file__).resolve().parent
CHOICE = HERE / "results" / "amc" / "full" / "chgnet" / "lr_choice.json"
SPEED = HERE / "results" / "chgnet_speed.jsonl"
SINGLE = ("backbone-ft", "adapter-ft")
AMC = ("amc-adapter", "amc-full")
GOAL_TASKS, GOAL_CHANGE = 0.8, -0.10

# task -> strategy -> split -> (val MAE, test MAE)
Cells = dict[str, dict[str, dict[str, tuple[float, float]]]]


def collect(rows: list[dict[str, Any]], labels: dict[str, str]) -> Cells:
    """Validation and test MAE of each strategy's tuned run, by task and split."""
    by_label = {label: strategy for strategy, label in labels.items()}
    cells: Cells = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        run = r["run"]
        if run["hub"] == "chgnet" and run.get("train_size") is None and run["label"] in by_label:
            cells[r["task"]][by_label[run["label"]]][r["split"]] = (
                r["metrics"]["val_mae"], r["metrics"]["test_mae"])
    return cells


def best_single(row: dict[str, dict[str, tuple[float, float]]], splits: set[str]) -> str | None:
    """backbone-ft or adapter-ft, whichever has the lower mean validation MAE on ``splits``."""
    scores = {s: np.mean([row[s][k][0] for k in splits]) for s in SINGLE
              if s in row and splits <= set(row[s])}
    return min(scores, key=lambda s: scores[s]) if scores else None


def compare(cells: Cells, amc: str) -> dict[str, Any]:
    won, n, rel, logs = 0, 0, [], []
    for row in cells.values():
        if amc not in row:
            continue
        splits = set(row[amc])
        single = best_single(row, splits)
        if single is None:
            continue
        a = np.mean([row[amc][s][1] for s in splits])
        b = np.mean([row[single][s][1] for s in splits])
        won += int(a < b)
        n += 1
        rel.append((a - b) / b)
        logs += [np.log(row[amc][s][1] / row[single][s][1]) for s in splits]
    p = float(wilcoxon(logs).pvalue) if len(logs) >= 6 else float("nan")
    return {"won": won, "n": n, "rel": float(np.mean(rel)) if rel else float("nan"),
            "pairs": len(logs), "p": p}


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    text = f"{np.mean(values):.4g}"
    if len(values) > 1:
        text += f" ± {np.std(values, ddof=1):.2g}"
    return text + ("" if len(values) >= 3 else f" ({len(values)})")


def speed_section() -> list[str]:
    if not SPEED.is_file():
        return []
    lines = ["## Speed of the CHGNet path (`benchmarks/bench_chgnet_speed.py`)", "",
             "Same compose run three times in one process: fast path off (before), on with an "
             "empty prefix cache (cold), on with the cache the previous run left (warm). One "
             "thread, on the shared 2-core machine (other work running: ratios, not absolute "
             "times, are the result).", "",
             "| task | strategy | epochs | before s | cold s | warm s | cold ratio | warm ratio "
             "| test MAE before / after |", "|---|---|---|---|---|---|---|---|---|"]
    records = [json.loads(line) for line in SPEED.read_text().splitlines()]
    for rec in records:
        if rec.get("mode") == "interleaved":
            continue
        runs = rec["runs"]
        lines.append(
            f"| {rec['task']} | {rec['strategy']} ({rec['kind']}) | {rec['epochs']} | "
            f"{runs['before']['wall_s']:.0f} | {runs['after_cold']['wall_s']:.0f} | "
            f"{runs['after_warm']['wall_s']:.0f} | {rec['speedup']['cold']:.2f}x | "
            f"{rec['speedup']['warm']:.2f}x | {runs['before']['test_mae']:.5g} / "
            f"{runs['after_cold']['test_mae']:.5g} |")
    lines += ["", "Whole runs measured one after another drift with the shared machine's load; the "
              "2-epoch row's MAE difference is the first-run generator bug described in the "
              "notes (fixed after it was measured), not the fast path."]
    inter = [r for r in records if r.get("mode") == "interleaved"]
    if inter:
        lines += ["", "Per batch of 32, fast path off and on alternately on the same batches "
                  "(`--interleaved`; robust to the machine's load drifting):", "",
                  "| task | batches | training step s before -> after | ratio | encoding s "
                  "before -> after | ratio |", "|---|---|---|---|---|---|"]
        for rec in inter:
            m = rec["median_s"]
            lines.append(f"| {rec['task']} | {rec['batches']} | {m['train_slow']:.2f} -> "
                         f"{m['train_fast']:.2f} | {rec['ratio']['train']:.2f}x | "
                         f"{m['encode_slow']:.2f} -> {m['encode_fast']:.2f} | "
                         f"{rec['ratio']['encode']:.2f}x |")
    return [*lines, ""]


def tuned_sections(rows: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    parts = speed_section()
    if not CHOICE.is_file():
        return [*parts, "## CHGNet with tuned fine-tuning lr", "",
                "Not yet: the lr grid (`amc_tuning.py --stage grid`) has not finished; see the "
                "notes below for where it stands.", ""]
    choice = json.loads(CHOICE.read_text())
    labels = {s: v["label"] for s, v in choice["strategies"].items()}
    grid = [f"{lr:.0e}".replace("e-0", "e-") for lr in choice["grid"]]
    parts += ["## CHGNet with tuned fine-tuning lr (chosen on seed0 validation)", "",
              f"Grid {', '.join(grid)}; tuning tasks {', '.join(choice['tasks'])}; score = "
              f"{choice['criterion']} (lower is better).", "",
              "| strategy | chosen lr | " + " | ".join(f"score at {g}" for g in grid) + " |",
              "|---" * (len(grid) + 2) + "|"]
    for strategy, v in choice["strategies"].items():
        parts.append(f"| {strategy} | {v['lr']:.0e} | "
                     + " | ".join(f"{v['score'][g]:.3f}" for g in grid) + " |")
    cells = collect(rows, labels)
    order = list(labels)
    parts += ["", "| task | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
    for task in tasks:
        if task in cells:
            parts.append(f"| {task} | " + " | ".join(
                fmt([t for _, t in cells[task].get(s, {}).values()]) for s in order) + " |")
    parts.append("")
    for amc in AMC:
        c = compare(cells, amc)
        if c["n"]:
            met = c["won"] >= GOAL_TASKS * c["n"] and c["rel"] <= GOAL_CHANGE
            parts.append(
                f"- {amc} beats the best tuned single-base fine-tune (chosen per task on "
                f"validation) on {c['won']} of {c['n']} tasks, mean relative MAE change "
                f"{100 * c['rel']:+.1f} %; Wilcoxon signed-rank on log MAE ratios over "
                f"{c['pairs']} (task, split) pairs: p = {c['p']:.3g}. Goal (>= 80 % of tasks, "
                f"<= -10 %): {'met' if met else 'not met'}.")
    return [*parts, ""]
