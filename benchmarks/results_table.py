"""Write ``docs/results.md`` from the cached AMC results (``benchmarks/results/amc``).

Run: ``.venv/bin/python benchmarks/results_table.py [--profile full]``. Every number in the
document is read from a result file written by ``amc_results.py``; nothing is typed in except
the paper's published reference numbers (``../shared/README.md``), shown beside ours.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from results_tuned import tuned_sections

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "amc"
TASKS = [
    "expt_eform", "jarvis_2d_dielectric_opt", "jarvis_2d_dielectric_tbmbj", "jarvis_2d_eform",
    "jarvis_2d_exfoliation", "jarvis_2d_gap_tbmbj", "mp_elastic_anisotropy", "mp_eps_electronic",
    "mp_poisson_ratio", "mp_poly_electronic", "mp_poly_total",
]
# MoMa paper, Table 1 (test MAE, mean of 5 splits), as listed in ../shared/README.md.
PAPER = {
    "expt_eform": (0.193, 0.0949, 0.168, 0.158, 0.0839),
    "jarvis_2d_dielectric_opt": (2.90, 2.29, 2.35, 2.31, 1.89),
    "jarvis_2d_eform": (0.169, 0.106, 0.125, 0.112, 0.0495),
    "jarvis_2d_exfoliation": (59.7, 52.5, 35.4, 35.4, 36.3),
    "mp_elastic_anisotropy": (3.65, 3.01, 2.42, 2.57, 2.86),
    "mp_eps_electronic": (0.168, 0.157, 0.108, 0.106, 0.0885),
    "mp_poisson_ratio": (0.0326, 0.0292, 0.0221, 0.0220, 0.0204),
    "mp_poly_electronic": (2.97, 2.61, 2.11, 2.13, 2.09),
    "mp_poly_total": (6.54, 5.51, 4.89, 4.89, 4.86),
}
PAPER_COLUMNS = ("CGCNN", "MoE-(18)", "JMP-FT", "MoMa (Adapter)", "MoMa (Full)")


def load(profile: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((RESULTS / profile).rglob("*.json")):
        report = json.loads(path.read_text())
        if "run" not in report:  # not a run: e.g. chgnet/lr_choice.json (amc_tuning.py)
            continue
        report["_file"] = str(path.relative_to(ROOT))
        rows.append(report)
    return rows


def collect(rows: list[dict[str, Any]], hub: str, size: int | None
            ) -> dict[str, dict[str, dict[str, float]]]:
    """task -> label -> split -> test MAE (and the floors under '__mean__', '__median__')."""
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        run = r["run"]
        if run["hub"] != hub or run.get("train_size") != size:
            continue
        table[r["task"]][run["label"]][r["split"]] = r["metrics"]["test_mae"]
        table[r["task"]]["__mean__"][r["split"]] = r["metrics"]["test_mae_train_mean"]
        table[r["task"]]["__median__"][r["split"]] = r["metrics"]["test_mae_train_median"]
    return table


ALL_SPLITS = "seed0,seed1,seed2,seed3,seed4"


def fmt(values: dict[str, float]) -> str:
    if not values:
        return "-"
    v = np.array(list(values.values()))
    text = f"{v.mean():.4g}"
    if len(v) > 1:
        text += f" ± {v.std(ddof=1):.2g}"
    return text + ("" if len(v) == 5 else f" ({len(v)})")


def chgnet_costs(rows: list[dict[str, Any]]) -> str:
    """Cost of every CHGNet run (the issue asks for it per run): wall seconds, of which encoding
    the training split with every candidate (selection) and fine-tuning, on one core."""
    labels = ["backbone-ft", "amc-full", "amc-adapter", "adapter-ft", "backbone-ft-lr3e-4"]
    cost: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        run = r["run"]
        if run["hub"] != "chgnet" or run.get("train_size") is not None or r["split"] != "seed0":
            continue
        t = r.get("timings", {})
        cost[r["task"]][run["label"]] = (
            f"{r['wall_s']:.0f} ({t.get('select_s', 0):.0f} + {t.get('fine_tune_s', 0):.0f})")
    lines = ["CHGNet cost per run on seed0, wall s (selection + fine-tuning), one thread:", "",
             "| task | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for task in TASKS:
        if task in cost:
            lines.append(f"| {task} | " + " | ".join(cost[task].get(lab, "-") for lab in labels)
                         + " |")
    return "\n".join(lines)


def markdown_table(table: dict[str, dict[str, dict[str, float]]], labels: list[str],
                   title_labels: dict[str, str]) -> tuple[str, dict[str, float]]:
    header = "| task | train mean | train median | " + " | ".join(
        title_labels.get(lab, lab) for lab in labels) + " |"
    lines = [header, "|" + "---|" * (len(labels) + 3)]
    ranks: dict[str, list[float]] = defaultdict(list)
    for task in TASKS:
        if task not in table:
            continue
        row = table[task]
        cells = [fmt(row.get("__mean__", {})), fmt(row.get("__median__", {}))]
        means = {lab: np.mean(list(row[lab].values())) for lab in labels if row.get(lab)}
        best = min(means.values()) if means else None
        for lab in labels:
            cell = fmt(row.get(lab, {}))
            if best is not None and lab in means and means[lab] == best:
                cell = f"**{cell}**"
            cells.append(cell)
        if len(means) == len(labels):
            order = sorted(labels, key=lambda lab: means[lab])
            for lab in labels:
                ranks[lab].append(order.index(lab) + 1)
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    avg = {lab: float(np.mean(r)) for lab, r in ranks.items()}
    if avg:
        lines.append("| **average rank** | | | " + " | ".join(
            f"{avg[lab]:.2f}" if lab in avg else "-" for lab in labels) + " |")
    return "\n".join(lines), avg


def wins(table: dict[str, dict[str, dict[str, float]]], a: str, b: str) -> tuple[int, int, float]:
    """Tasks where ``a`` has lower mean MAE than ``b``, tasks compared, mean relative change."""
    won, n, rel = 0, 0, []
    for row in table.values():
        if row.get(a) and row.get(b):
            common = sorted(set(row[a]) & set(row[b]))
            if not common:
                continue
            ma = np.mean([row[a][s] for s in common])
            mb = np.mean([row[b][s] for s in common])
            won += int(ma < mb)
            n += 1
            rel.append((ma - mb) / mb)
    return won, n, float(np.mean(rel)) if rel else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="Write docs/results.md")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--notes", default=str(ROOT / "docs" / "results_notes.md"),
                        help="hand-written analysis appended to the generated tables")
    args = parser.parse_args()
    rows = load(args.profile)
    parts = ["# AMC results on the real downstream tasks",
             "",
             "Generated by `benchmarks/results_table.py` from the result files in "
             f"`benchmarks/results/amc/{args.profile}/` (one JSON per task, split, strategy), "
             "written by `benchmarks/amc_results.py`. Test MAE in each task's unit, mean ± "
             "standard deviation over the published splits; a number in parentheses is how many "
             "splits are done when fewer than 5. **Bold**: best mean in the row. The train-mean "
             "and train-median predictors are the floor any model must clear.",
             ""]
    cg = collect(rows, "cgcnn", None)
    moe = collect(rows, "moe18", None)
    for task, row in moe.items():
        for label, values in row.items():
            if not label.startswith("__"):
                cg[task][f"moe18:{label}"] = values
    labels = ["scratch", "backbone-ft", "amc-full", "amc-adapter", "select-average",
              "all-average", "random", "moe18:amc-top1", "moe18:amc-ensemble"]
    titles = {"moe18:amc-top1": "MoE-18 AMC top1", "moe18:amc-ensemble": "MoE-18 AMC ensemble"}
    present = [lab for lab in labels if any(cg[t].get(lab) for t in cg)]
    text, _ = markdown_table(cg, present, titles)
    parts += ["## CGCNN (shared base: the imported mp_eform module)", "", text, ""]
    for a, b in [("amc-full", "backbone-ft"), ("amc-adapter", "backbone-ft"),
                 ("amc-adapter", "adapter-ft"), ("adapter-ft", "backbone-ft"),
                 ("moe18:amc-ensemble", "backbone-ft"),
                 ("moe18:amc-top1", "backbone-ft"), ("amc-full", "all-average"),
                 ("amc-full", "random"), ("amc-full", "select-average")]:
        won, n, rel = wins(cg, a, b)
        if n:
            parts.append(f"- {a} beats {b} on {won} of {n} tasks; mean relative MAE change "
                         f"{100 * rel:+.1f} %.")
    parts.append("")
    remedies = ["backbone-ft", "amc-full", "amc-full-top1", "amc-full+base",
                "amc-full-top1+base", "amc-full-inherit", "amc-full-inherit+base",
                "amc-full-top1-inherit",
                "amc-full-knn-head", "amc-full-w0.2",
                "backbone-ft-lr3e-4", "amc-full-lr3e-4", "backbone-ft-lr1e-3", "amc-full-lr1e-3"]
    done = [lab for lab in remedies if any(cg[t].get(lab) for t in cg)]
    if len(done) > 2:  # remedies on the splits where they ran, beside the two they try to fix
        splits = {s for t in cg for lab in done[2:] for s in cg[t].get(lab, {})}
        sub = {t: {lab: {s: v for s, v in vals.items() if s in splits}
                   for lab, vals in row.items() if lab in done or lab.startswith("__")}
               for t, row in cg.items()}
        text, _ = markdown_table(sub, done, {})
        parts += ["## Remedies tried (CGCNN; on the splits where they ran: "
                  + ", ".join(sorted(splits)) + ")", "", text, ""]
        for a in done[1:]:
            base = "backbone-ft-lr3e-4" if a == "amc-full-lr3e-4" else (
                "backbone-ft-lr1e-3" if a == "amc-full-lr1e-3" else "backbone-ft")
            if a == base:
                continue
            won, n, rel = wins(sub, a, base)
            if n:
                parts.append(f"- {a} beats {base} on {won} of {n} tasks; mean relative MAE "
                             f"change {100 * rel:+.1f} %.")
        parts.append("")
    parts += tuned_sections(TASKS)
    ch = collect(rows, "chgnet", None)
    if ch:
        text, _ = markdown_table(ch, ["backbone-ft", "amc-full", "amc-adapter"], {})
        parts += ["", "## CHGNet at the paper's lr 8e-5 (shared base: pretrained CHGNet 0.3.0; "
                  "seed0, the first hub build)", "", text, ""]
        controls = [lab for lab in ["adapter-ft", "backbone-ft-lr3e-4"]
                    if any(ch[t].get(lab) for t in ch)]
        if controls:  # its own table: the average rank only counts rows with every column
            text, _ = markdown_table(ch, ["backbone-ft", "amc-full", "amc-adapter", *controls],
                                     {})
            parts += ["Controls (fresh adapters on the base; backbone-ft at lr 3e-4), on the "
                      "tasks where they ran; the average rank counts complete rows only:", "",
                      text, ""]
        for a, b in [("amc-full", "backbone-ft"), ("amc-adapter", "backbone-ft"),
                     ("amc-adapter", "adapter-ft"), ("adapter-ft", "backbone-ft"),
                     ("backbone-ft-lr3e-4", "backbone-ft"), ("amc-full", "backbone-ft-lr3e-4"),
                     ("amc-adapter", "backbone-ft-lr3e-4")]:
            won, n, rel = wins(ch, a, b)
            if n:
                parts.append(f"- {a} beats {b} on {won} of {n} tasks; mean relative "
                             f"MAE change {100 * rel:+.1f} %.")
        parts += ["", chgnet_costs(rows)]
    for size in (100, 10):
        fs = collect(rows, "cgcnn", size)
        if fs:
            text, _ = markdown_table(fs, ["backbone-ft", "amc-full"], {})
            won, n, rel = wins(fs, "amc-full", "backbone-ft")
            parts += ["", f"## Few-shot, N = {size} training structures (CGCNN family)", "",
                      text, "", f"- amc-full beats backbone-ft on {won} of {n} tasks; mean "
                      f"relative MAE change {100 * rel:+.1f} %."]
    wall: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        wall[f"{r['run']['hub']}:{r['run']['label']}"].append(r["wall_s"])
    parts += ["", "## Wall-clock time per run (2 cores)", "", "| run | runs | median s | total h |",
              "|---|---|---|---|"]
    for key in sorted(wall):
        v = np.array(wall[key])
        parts.append(f"| {key} | {len(v)} | {np.median(v):.0f} | {v.sum() / 3600:.2f} |")
    parts += ["", "## Paper (MoMa, Table 1; JMP backbone on GPUs), for reference", "",
              "| task | " + " | ".join(PAPER_COLUMNS) + " |", "|---" * 6 + "|"]
    for task, published in PAPER.items():
        parts.append(f"| {task} | " + " | ".join(f"{v:g}" for v in published) + " |")
    parts += ["", "## Reproduce", "",
              "Every number above: `OMP_NUM_THREADS=1 bash benchmarks/run_plan.sh cgcnn` and "
              "`OMP_NUM_THREADS=1 bash benchmarks/run_plan.sh chgnet` (two processes, one per "
              "core; resumable). The steps it runs:", "", "```bash",
              "cd benchmarks",
              "../.venv/bin/python amc_hub.py --family cgcnn-full --family cgcnn-adapter "
              f"--profile {args.profile}",
              "../.venv/bin/python amc_results.py --hub cgcnn --splits " + ALL_SPLITS,
              "../.venv/bin/python amc_results.py --hub moe18 --splits " + ALL_SPLITS,
              "../.venv/bin/python amc_results.py --hub fewshot --train-size 100 --splits "
              "seed0,seed1,seed2",
              "../.venv/bin/python amc_results.py --hub fewshot --train-size 10 --splits "
              "seed0,seed1,seed2",
              "../.venv/bin/python amc_results.py --hub remedies --splits seed0",
              "../.venv/bin/python amc_results.py --hub remedies2 --splits seed0",
              "../.venv/bin/python amc_results.py --hub adapter-control --splits "
              "seed0,seed1,seed2",
              "../.venv/bin/python amc_hub.py --family chgnet-full --family chgnet-adapter",
              "../.venv/bin/python amc_results.py --hub chgnet --splits seed0",
              "../.venv/bin/python amc_results.py --hub chgnet-lr --splits seed0",
              "../.venv/bin/python amc_tuning.py --stage grid   # lr grid, seed0, 4 tasks",
              "../.venv/bin/python amc_tuning.py --stage choose",
              "../.venv/bin/python amc_tuning.py --stage tuned --splits seed0,seed1,seed2",
              "../.venv/bin/python amc_tuning.py --stage tuned --splits seed0,seed1,seed2 "
              "--train-size 10   # and 100",
              "../.venv/bin/python module_scaling.py   # k = 1, 2, 4, 8, all; 3 draws; seed0",
              "../.venv/bin/python bench_chgnet_speed.py --task mp_eps_electronic",
              "../.venv/bin/python amc_analysis.py   # proxy quality against final MAE",
              "../.venv/bin/python results_table.py", "```", ""]
    notes = Path(args.notes)
    if notes.is_file():
        parts += [notes.read_text()]
    Path(args.out).write_text("\n".join(parts) + "\n")
    print(f"wrote {args.out} from {len(rows)} result files")


if __name__ == "__main__":
    main()
