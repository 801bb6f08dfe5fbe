"""Module scaling: does composition get better as labs contribute more modules?

For each task the *pool* is what compose may offer for it from the hub family: every module
but the one trained on the task itself and those trained on crystals of the task's validation
or test split (``amc_results.leaking_sources``, as in every other run). For k in 1, 2, 4, 8
(each k smaller than the pool) and 3 different draws per k, k modules are drawn from the pool
(sorted by name) with ``numpy.random.default_rng(draw_seed(k, d))``, ``draw_seed = 1000 k + d``
(raised by 100 while it repeats an earlier draw's subset; the seed used is recorded), and
composed with AMC through the one compose entry point (``amc_results.execute`` ->
``moma.api.compose``), fine-tuned at the strategy's lr (for the CHGNet adapter family the lr
chosen on seed0 validation by ``amc_tuning.py``). k = all is the whole pool, i.e. exactly the
tuned AMC run, whose result file it shares. Each run reads its test split once, at its end;
nothing is chosen on test.

Result files (resumable; a file already there is kept):
``benchmarks/results/amc/scaling/<hub>/<task>/<split>-k<k>-d<draw>-<label>.json``, with the
draw seed, the pool and the drawn modules in their ``run`` entry. The figure
(``docs/figures/module_scaling.png``): test MAE against k per task, draws as dots and their
mean as a line, the fine-tuned base (fresh adapters on the base = "k = 0", and the fully
fine-tuned base) as horizontal lines; the last panel: MAE relative to fresh adapters, mean
over tasks.

Run: ``python benchmarks/module_scaling.py`` (CHGNet adapter family, 5 tasks, seed0);
``--tasks``/``--ks``/``--draws`` to change the design, ``--plot-only`` to redraw. Checks of the
tooling: ``--family moe18 --modules DIR --epochs 2 --results DIR --base`` (``--base`` also
runs the missing base fine-tunes).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from amc_hub import DOWNSTREAM
from amc_results import (
    Run,
    add_check_options,
    execute,
    leaking_sources,
    module_folder,
    result_path,
)
from evaluate_task import family_modules
from lr_grid import PROFILE, choose_one, grid_label, lr_label

from moma.atomic_io import write_json
from moma.modules.store import LoadedModule

SCALING_TASKS = ("jarvis_2d_gap_tbmbj", "jarvis_2d_eform", "jarvis_2d_dielectric_opt",
                 "jarvis_2d_exfoliation", "mp_poly_total")
KS = ("1", "2", "4", "8", "all")
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "module_scaling.png"


def draw_seed(k: int, draw: int) -> int:
    return 1000 * k + draw


def draws(pool_size: int, k: int, count: int) -> list[tuple[int, list[int]]]:
    """``count`` different k-subsets of the pool (fewer when fewer exist), each with its seed.

    Draw d uses ``default_rng(draw_seed(k, d))``; when that repeats an earlier draw's subset
    (likely for k near the pool size), the seed is raised by 100 until the subset is new.
    """
    out: list[tuple[int, list[int]]] = []
    for draw in range(min(count, math.comb(pool_size, k))):
        seed = draw_seed(k, draw)
        while True:
            subset = sorted(np.random.default_rng(seed).choice(pool_size, k, replace=False)
                            .tolist())
            if all(subset != taken for _, taken in out):
                break
            seed += 100
        out.append((seed, subset))
    return out


@dataclass(frozen=True)
class Family:
    """What one scaling curve composes: the AMC run, and the base fine-tunes it is drawn against."""

    name: str
    amc: Run
    bases: dict[str, Run]  # legend label -> run (same hub file layout as amc_results)


def family_runs(name: str, lr: float | None, results: Path) -> Family:
    if name == "chgnet-adapter":
        def tuned(strategy: str, run: Run) -> Run | None:
            one = choose_one(strategy, results=results)
            chosen = lr if lr is not None else (one["lr"] if one else None)
            return None if chosen is None else replace(
                run, lr=chosen, label=grid_label(strategy, chosen))
        amc = tuned("amc-adapter", Run("chgnet", "amc", kind="adapter"))
        if amc is None:
            raise SystemExit("no lr chosen for amc-adapter yet: finish its grid (`amc_tuning.py "
                             "--stage grid --strategies amc-adapter`) or pass --lr")
        bases = {"fresh adapters on the base (k = 0)":
                 tuned("adapter-ft", Run("chgnet", "backbone-ft", kind="adapter")),
                 "base fully fine-tuned": tuned("backbone-ft", Run("chgnet", "backbone-ft"))}
        # a base whose lr is not chosen yet has no line until the figure is redrawn
        return Family(name, amc, {k: v for k, v in bases.items() if v is not None})
    if name == "moe18":  # no shared base: the top-weighted module is fine-tuned
        tail = f"-lr{lr_label(lr)}" if lr is not None else ""
        return Family(name, Run("moe18", "amc", merge="top1", lr=lr, label="amc-top1" + tail),
                      {"mp_eform fine-tuned": Run("cgcnn", "backbone-ft", lr=lr,
                                                  label="backbone-ft" + tail)})
    raise SystemExit(f"--family {name!r}: choose chgnet-adapter or moe18")


def pool(family: Family, task: str, split: str, modules: Path | None) -> list[LoadedModule]:
    """The family's modules compose may offer for ``task`` (sorted by folder name)."""
    folder = modules or module_folder(family.amc, PROFILE)
    excluded = leaking_sources(task, split) if family.amc.hub != "moe18" else []
    return family_modules(folder, excluded, task)


def scaling_path(results: Path, family: Family, task: str, split: str, k: int, draw: int) -> Path:
    return (results / "scaling" / family.amc.hub / task
            / f"{split}-k{k}-d{draw}-{family.amc.name}.json")


def run_task(family: Family, task: str, args: argparse.Namespace) -> None:
    modules = pool(family, task, args.split, args.modules)
    names = [m.path.name for m in modules]
    for k_text in args.ks.split(","):
        if k_text == "all":
            execute(family.amc, task, args.split, None, PROFILE, results=args.results,
                    epochs=args.epochs, candidates=[args.modules] if args.modules else None)
            continue
        k = int(k_text)
        if k >= len(modules):
            print(f"{task}: k = {k} is not below the pool of {len(modules)}: covered by k = all")
            continue
        for draw, (seed, chosen) in enumerate(draws(len(modules), k, args.draws)):
            execute(family.amc, task, args.split, None, PROFILE, results=args.results,
                    path=scaling_path(args.results, family, task, args.split, k, draw),
                    epochs=args.epochs, candidates=[modules[i] for i in chosen],
                    record={"k": k, "draw": draw, "draw_seed": seed, "pool": names,
                            "drawn": [names[i] for i in chosen]})
    if args.base:
        for run in family.bases.values():
            execute(run, task, args.split, None, PROFILE, results=args.results,
                    epochs=args.epochs)


def test_mae(path: Path) -> float | None:
    return json.loads(path.read_text())["metrics"]["test_mae"] if path.is_file() else None


def curves(family: Family, tasks: list[str], split: str, results: Path) -> dict[str, Any]:
    """Per task: {k: [test MAE per draw]}, the pool size, and each base's test MAE."""
    out: dict[str, Any] = {}
    for task in tasks:
        folder = results / "scaling" / family.amc.hub / task
        points: dict[int, list[float]] = {}
        pool_size = None
        for path in sorted(folder.glob(f"{split}-k*-d*-{family.amc.name}.json")):
            report = json.loads(path.read_text())
            points.setdefault(report["run"]["k"], []).append(report["metrics"]["test_mae"])
            pool_size = len(report["run"]["pool"])
        whole = result_path(family.amc, task, split, None, PROFILE, results)
        if whole.is_file():
            report = json.loads(whole.read_text())
            pool_size = len(report["candidates"])
            points[pool_size] = [report["metrics"]["test_mae"]]
        bases = {label: test_mae(result_path(run, task, split, None, PROFILE, results))
                 for label, run in family.bases.items()}
        if points:
            out[task] = {"points": points, "pool": pool_size, "all": whole.is_file(),
                         "bases": {k: v for k, v in bases.items() if v is not None}}
    return out


def plot(data: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(data) + 1
    cols = min(3, panels)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    flat = list(axes.ravel())
    colors = ("tab:red", "tab:gray")
    relative: dict[int | str, list[float]] = {}
    for ax, (task, d) in zip(flat, data.items(), strict=False):
        ks = sorted(d["points"])
        for k in ks:
            ax.scatter([k] * len(d["points"][k]), d["points"][k], s=14, color="tab:blue",
                       alpha=0.6)
        ax.plot(ks, [np.mean(d["points"][k]) for k in ks], color="tab:blue", marker="o",
                label="AMC, mean of draws")
        for (label, mae), color in zip(d["bases"].items(), colors, strict=False):
            ax.axhline(mae, color=color, ls="--", lw=1, label=label)
        first = next(iter(d["bases"].values()), None)
        if first:
            for k in ks:
                key = "all" if d["all"] and k == ks[-1] else k
                relative.setdefault(key, []).append(float(np.mean(d["points"][k])) / first)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [f"all ({k})" if d["all"] and k == ks[-1] else str(k) for k in ks])
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("modules in the hub (k)")
        ax.set_ylabel("test MAE")
    summary = flat[len(data)]
    keys = [k for k in (1, 2, 4, 8) if k in relative] + (["all"] if "all" in relative else [])
    if keys:
        xs = list(range(len(keys)))
        summary.plot(xs, [np.mean(relative[k]) for k in keys], marker="o", color="tab:blue")
        summary.set_xticks(xs, [f"{k} (n={len(relative[k])})" for k in keys], fontsize=8)
        summary.axhline(1.0, color=colors[0], ls="--", lw=1)
    first_label = next((label for d in data.values() for label in d["bases"]), "base")
    summary.set_title(f"mean over tasks, MAE / MAE of: {first_label}", fontsize=8)
    for ax in flat:
        ax.ticklabel_format(axis="y", useOffset=False)
    summary.set_xlabel("modules in the hub (k)")
    summary.set_ylabel("MAE / base MAE")
    for ax in flat[len(data) + 1:]:
        ax.axis("off")
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="Test MAE against the number of modules.")
    parser.add_argument("--family", default="chgnet-adapter", help="chgnet-adapter or moe18")
    parser.add_argument("--tasks", default=",".join(SCALING_TASKS),
                        help="comma-separated tasks, or 'rest': the downstream tasks not in "
                             "the default five")
    parser.add_argument("--ks", default=",".join(KS))
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--split", default="seed0")
    parser.add_argument("--lr", type=float, default=None,
                        help="fine-tuning lr (default: the choice on seed0 validation)")
    add_check_options(parser, "the pool's folder instead of the hub family")
    parser.add_argument("--base", action="store_true", help="also run missing base fine-tunes")
    parser.add_argument("--plot", type=Path, default=FIGURE)
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--no-plot", action="store_true", help="run, write the summary only")
    args = parser.parse_args()
    family = family_runs(args.family, args.lr, args.results)
    tasks = ([t for t in DOWNSTREAM if t not in SCALING_TASKS] if args.tasks == "rest"
             else [t for t in args.tasks.split(",") if t])
    if not args.plot_only:
        for task in tasks:
            run_task(family, task, args)
    folder = args.results / "scaling" / family.amc.hub
    done = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    # the summary and the figure cover every task with scaling runs, not only this call's
    shown = [t for t in DOWNSTREAM if t in done or t in tasks]
    data = curves(family, shown, args.split, args.results)
    write_json(args.results / "scaling" / family.amc.hub / "summary.json",
               {"family": args.family, "run": family.amc.name, "split": args.split,
                "base_labels": list(family.bases), "figure": str(args.plot),
                "tasks": {t: {**d, "points": {str(k): v for k, v in d["points"].items()}}
                          for t, d in data.items()}})
    if data and not args.no_plot:
        plot(data, args.plot, f"Module scaling: {args.family}, AMC ({family.amc.name}), "
                               f"{args.split}")
    print(json.dumps({"done": True, "tasks": {t: {str(k): v for k, v in d["points"].items()}
                                              for t, d in data.items()}, "plot": str(args.plot)}))


if __name__ == "__main__":
    main()
