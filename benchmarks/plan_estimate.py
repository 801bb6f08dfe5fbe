"""What is left of the tuned CHGNet plan (``run_plan.sh chgnet-tuned-a|b``), in CPU-hours.

Counts, block by block in the plan's order, the runs whose result file does not exist yet, and
prices each with a cost model measured on the shared 2-core machine (one thread; CPU seconds
read from ``/proc`` while the lanes ran, so the machine's load does not enter; the wall time of
a lane is its CPU time divided by the share of a core it gets):

- a 30-epoch run on jarvis_2d_eform costs ``EFORM_CPU_S[kind]`` (measured);
- another task costs ``WEIGHT[task]`` times that: the relative cost of the tasks in the
  earlier seed0 backbone-ft table (one machine, one strategy, 30 epochs; the 11-epoch runs
  scaled to 30). CHGNet's cost follows its bonds and angles, not the crystal count: the dense
  3D crystals of expt_eform and the MP elastic pair cost 6-18x jarvis_2d_eform per run;
- few-shot runs scale the training part (``TRAIN_SHARE`` of a run) by N / n_train;
- AMC adds the selection (encoding the training split with every candidate): ``AMC_FACTOR``;
- each run pays ``OVERHEAD_S`` (process start, CHGNet and the data loaded);
- a hub module: the same over its own epochs (``amc_hub.CHGNET_ADAPTER/FULL``); a Castelli
  module is priced from the adapter family's Castelli modules (``CASTELLI_ADAPTER_S``).

Run: ``python benchmarks/plan_estimate.py`` (one line per block and the total).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from lr_grid import GRID, RESULTS, TUNING_TASKS, choose_one, run_file

# measured (docs/results_notes.md, "Status and plan"): adapter-ft on jarvis_2d_eform 180 CPU s,
# twice (lr 3e-4 and 1e-3, fast path on); backbone-ft on jarvis_2d_dielectric_opt 263 CPU s,
# i.e. 289 for jarvis_2d_eform with the weights below.
EFORM_CPU_S = {"adapter": 180.0, "full": 289.0}
WEIGHT = {  # seed0 backbone-ft wall s / jarvis_2d_eform's 133 s (expt_eform, gap: x 30/11)
    "expt_eform": 18.0, "jarvis_2d_dielectric_opt": 0.91, "jarvis_2d_dielectric_tbmbj": 0.25,
    "jarvis_2d_eform": 1.0, "jarvis_2d_exfoliation": 1.01, "jarvis_2d_gap_tbmbj": 0.29,
    "mp_elastic_anisotropy": 6.1, "mp_eps_electronic": 2.37, "mp_poisson_ratio": 6.1,
    "mp_poly_electronic": 1.79, "mp_poly_total": 1.92,
}
N_TRAIN = {"expt_eform": 1196, "jarvis_2d_dielectric_opt": 365, "jarvis_2d_dielectric_tbmbj": 84,
           "jarvis_2d_eform": 443, "jarvis_2d_exfoliation": 445, "jarvis_2d_gap_tbmbj": 84,
           "mp_elastic_anisotropy": 826, "mp_eps_electronic": 907, "mp_poisson_ratio": 826,
           "mp_poly_electronic": 739, "mp_poly_total": 739}
TRAIN_SHARE = 0.94  # 3 x training atoms against validation atoms, every task within 0.92-0.95
AMC_FACTOR = 1.12  # selection was 10-15 % of an AMC run on seed0
OVERHEAD_S = 20.0
CASTELLI_ADAPTER_S = 450.0  # Castelli adapter modules: 2,000-3,090 s wall at ~0.15-0.2 core
SIZES = N_TRAIN
KIND = {"backbone-ft": "full", "amc-full": "full", "adapter-ft": "adapter",
        "amc-adapter": "adapter"}
SCALING_TASKS = ("jarvis_2d_gap_tbmbj", "jarvis_2d_eform", "jarvis_2d_dielectric_opt",
                 "jarvis_2d_exfoliation", "mp_poly_total")
SCALING_RUNS = 12  # k = 1, 2, 4, 8 x 3 draws (k = all is the tuned seed0 run)
HUB = Path.home() / ".cache" / "moma" / "runs" / "hub"
COMMITTED = Path(__file__).resolve().parent / "families"  # restored, not trained (amc_hub.py)


def run_cpu_s(strategy: str, task: str, train_size: int | None = None, epochs: int = 30
              ) -> float:
    share = min(1.0, (train_size or N_TRAIN[task]) / N_TRAIN[task])
    cost = (EFORM_CPU_S[KIND[strategy]] * WEIGHT[task] * epochs / 30
            * (TRAIN_SHARE * share + 1 - TRAIN_SHARE))
    return OVERHEAD_S + cost * (AMC_FACTOR if strategy.startswith("amc") else 1.0)


def module_cpu_s(kind: str, source: str) -> float:
    """A hub module (amc_hub.CHGNET_ADAPTER / CHGNET_FULL budgets)."""
    if source.startswith("castelli_"):  # the full family trains on twice the subsample
        return CASTELLI_ADAPTER_S * (1 if kind == "adapter" else 2 * EFORM_CPU_S["full"]
                                     / EFORM_CPU_S["adapter"])
    return run_cpu_s("adapter-ft" if kind == "adapter" else "backbone-ft", source,
                     epochs=20 if kind == "adapter" else 40)


def missing_runs(strategies: tuple[str, ...], splits: tuple[str, ...],
                 train_size: int | None = None, tasks: tuple[str, ...] = tuple(SIZES)
                 ) -> Iterator[tuple[str, str]]:
    """(strategy, task) of every tuned run not done; at the chosen lr, or, while the lr is not
    chosen, counted as missing unless the run exists at every grid lr."""
    for strategy in strategies:
        one = choose_one(strategy)
        for split in splits:
            for task in tasks:
                if split == "seed0" and train_size is None and task in TUNING_TASKS:
                    continue  # the grid run at the chosen lr is the tuned run
                lrs = [one["lr"]] if one else list(GRID)
                if not all(run_file(strategy, lr, task, split, train_size).is_file()
                           for lr in lrs):
                    yield strategy, task


def blocks() -> list[tuple[str, str, float, int]]:
    """(lane, block, CPU seconds left, runs left), each lane in the order of run_plan.sh."""
    out: list[tuple[str, str, float, int]] = []
    every = tuple(SIZES)

    def hub(kind: str) -> None:
        sources = [f"castelli_{t}" for t in ("e_form", "dir_gap", "ind_gap")] + list(SIZES)
        items = [module_cpu_s(kind, s) for s in sources
                 if not any((root / f"chgnet-{kind}" / s / "card.json").is_file()
                            for root in (HUB, COMMITTED))]
        out.append(("a", f"hub family chgnet-{kind}", sum(items), len(items)))

    def grid(lane: str, strategies: tuple[str, ...]) -> None:
        items = [run_cpu_s(s, t) for s in strategies for t in TUNING_TASKS for lr in GRID
                 if not run_file(s, lr, t).is_file()]
        out.append((lane, f"lr grid {', '.join(strategies)}", sum(items), len(items)))

    def tuned(lane: str, strategies: tuple[str, ...], splits: tuple[str, ...],
              size: int | None = None, tasks: tuple[str, ...] = every) -> None:
        items = [run_cpu_s(s, t, size) for s, t in missing_runs(strategies, splits, size, tasks)]
        name = f"{', '.join(strategies)} {','.join(splits)}" + (f" N = {size}" if size else "")
        out.append((lane, name, sum(items), len(items)))

    def scaling(tasks: tuple[str, ...], name: str) -> None:
        folder = RESULTS / "scaling" / "chgnet"
        items = [run_cpu_s("amc-adapter", t) for t in tasks for _ in range(
            SCALING_RUNS - len(list((folder / t).glob("seed0-k*-d*.json"))))]
        out.append(("a", name, sum(items), len(items)))

    seeds = ("seed0", "seed1", "seed2")
    pair = ("backbone-ft", "adapter-ft")
    hub("adapter")
    grid("a", ("amc-adapter",))
    tuned("a", ("amc-adapter",), ("seed0",))
    tuned("a", ("amc-adapter",), seeds, 10)
    tuned("a", ("amc-adapter",), ("seed1", "seed2"))
    scaling(SCALING_TASKS, "module scaling, 5 tasks")
    tuned("a", ("amc-adapter",), seeds, 100)
    hub("full")
    grid("a", ("amc-full",))
    tuned("a", ("amc-full",), ("seed0", "seed1"))
    scaling(tuple(t for t in SIZES if t not in SCALING_TASKS), "module scaling, other 6 tasks")
    tuned("a", ("amc-adapter", "amc-full"), ("seed3", "seed4"))
    grid("b", pair)
    tuned("b", pair, ("seed0",))
    tuned("b", pair, seeds, 10)
    tuned("b", pair, ("seed1", "seed2"))
    tuned("b", pair, seeds, 100)
    tuned("b", pair, ("seed3", "seed4"))
    tuned("b", ("amc-full",), ("seed2",))
    return out


def main() -> None:
    rows = blocks()
    total: dict[str, float] = {}
    print(f"{'lane':4s} {'block':58s} {'runs':>5s} {'CPU-h':>6s} {'lane cum.':>9s}")
    for lane, name, seconds, runs in rows:
        total[lane] = total.get(lane, 0.0) + seconds
        print(f"{lane:4s} {name:58s} {runs:5d} {seconds / 3600:6.2f} {total[lane] / 3600:9.2f}")
    print(json.dumps({"cpu_h_left": round(sum(total.values()) / 3600, 1),
                      "by_lane": {k: round(v / 3600, 1) for k, v in total.items()}}))


if __name__ == "__main__":
    main()
