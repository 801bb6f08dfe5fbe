"""What is left of the tuned CHGNet plan (``run_plan.sh chgnet-tuned-a|b``), in CPU-hours.

Counts, block by block in the plan's order, the runs whose result file does not exist yet, and
prices each with a cost model measured on the shared 2-core machine (one thread; CPU seconds
read from ``/proc`` while the lanes ran, so the machine's load does not enter; the wall time of
a lane is its CPU time divided by the share of a core it gets):

- a fine-tuning run costs ``epochs x (3 train atoms + val atoms)`` *units* (a training step
  costs about three forward passes, validation runs every epoch; CHGNet's cost grows with the
  atoms, and expt_eform's crystals are twice the size of the JARVIS 2D ones) times
  ``MS_PER_UNIT[kind]``; few-shot runs scale the training atoms by N / n_train;
- AMC adds the selection (encoding the training split with every candidate): ``AMC_FACTOR``;
- each run pays ``OVERHEAD_S`` (process start, CHGNet and the data loaded, test pass);
- a hub module: the same units over its own budget (``amc_hub.CHGNET_ADAPTER/FULL``); the
  dense 5-atom Castelli cells cost ``CASTELLI_FACTOR`` times more per atom (many periodic
  neighbours within the cutoff), read off the adapter family's Castelli modules.

Run: ``python benchmarks/plan_estimate.py`` (one line per block and the total).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from lr_grid import GRID, RESULTS, TUNING_TASKS, choose_one, run_file

# measured (docs/results_notes.md, "Status and plan"): adapter-ft on jarvis_2d_eform (3,190
# training and 620 validation atoms, 30 epochs: 305,700 units) 180 CPU s, twice (lr 3e-4 and
# 1e-3, fast path on); backbone-ft on jarvis_2d_dielectric_opt (243,720 units) 263 CPU s.
MS_PER_UNIT = {"adapter": 0.59, "full": 1.08}
AMC_FACTOR = 1.12  # selection was 10-15 % of an AMC run on seed0
OVERHEAD_S = 20.0
CASTELLI = {"atoms": 5.0, "val": 1136, "factor": 3.0}
SIZES = {  # seed0: training structures, training atoms, validation atoms
    "expt_eform": (1196, 18534, 1880), "jarvis_2d_dielectric_opt": (365, 2507, 603),
    "jarvis_2d_dielectric_tbmbj": (84, 724, 128), "jarvis_2d_eform": (443, 3190, 620),
    "jarvis_2d_exfoliation": (445, 3215, 635), "jarvis_2d_gap_tbmbj": (84, 740, 128),
    "mp_elastic_anisotropy": (826, 10196, 2181), "mp_eps_electronic": (907, 6739, 1486),
    "mp_poisson_ratio": (826, 10196, 2181), "mp_poly_electronic": (739, 5528, 1196),
    "mp_poly_total": (739, 5528, 1196),
}
KIND = {"backbone-ft": "full", "amc-full": "full", "adapter-ft": "adapter",
        "amc-adapter": "adapter"}
SCALING_TASKS = ("jarvis_2d_gap_tbmbj", "jarvis_2d_eform", "jarvis_2d_dielectric_opt",
                 "jarvis_2d_exfoliation", "mp_poly_total")
SCALING_RUNS = 12  # k = 1, 2, 4, 8 x 3 draws (k = all is the tuned seed0 run)
HUB = Path.home() / ".cache" / "moma" / "runs" / "hub"


def run_cpu_s(strategy: str, task: str, train_size: int | None = None, epochs: int = 30
              ) -> float:
    n, train_atoms, val_atoms = SIZES[task]
    train_atoms *= min(1.0, (train_size or n) / n)
    cost = epochs * (3 * train_atoms + val_atoms) * MS_PER_UNIT[KIND[strategy]] / 1000
    return OVERHEAD_S + cost * (AMC_FACTOR if strategy.startswith("amc") else 1.0)


def module_cpu_s(kind: str, source: str) -> float:
    """A hub module (amc_hub.CHGNET_ADAPTER / CHGNET_FULL budgets)."""
    if source.startswith("castelli_"):
        n = 1000 if kind == "adapter" else 2000
        units = 10 * (3 * n + CASTELLI["val"]) * CASTELLI["atoms"] * CASTELLI["factor"]
    else:
        _, train_atoms, val_atoms = SIZES[source]
        units = (20 if kind == "adapter" else 40) * (3 * train_atoms + val_atoms)
    return OVERHEAD_S + units * MS_PER_UNIT[kind] / 1000


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
                 if not (HUB / f"chgnet-{kind}" / s / "card.json").is_file()]
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
    tuned("a", ("amc-adapter",), ("seed1", "seed2"))
    scaling(SCALING_TASKS, "module scaling, 5 tasks")
    tuned("a", ("amc-adapter",), seeds, 10)
    tuned("a", ("amc-adapter",), seeds, 100)
    hub("full")
    grid("a", ("amc-full",))
    tuned("a", ("amc-full",), ("seed0", "seed1"))
    scaling(tuple(t for t in SIZES if t not in SCALING_TASKS), "module scaling, other 6 tasks")
    tuned("a", ("amc-adapter", "amc-full"), ("seed3", "seed4"))
    grid("b", pair)
    tuned("b", pair, ("seed0",))
    tuned("b", pair, ("seed1", "seed2"))
    tuned("b", pair, seeds, 10)
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
