"""The tuned CHGNet tables (``benchmarks/results_tuned.py``) on partial and complete results.

The result files are written here in the layout ``amc_tuning.py`` uses, with known validation
and test MAEs, so the lr choice, the best single-base fine-tune, the paired test and the goal's
verdict can be checked against numbers computed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy.stats import wilcoxon

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TASKS = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10"]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    monkeypatch.syspath_prepend(str(BENCH))
    import lr_grid
    import results_tuned

    yield lr_grid, results_tuned


def write(path: Path, val: float, test: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": {"val_mae": val, "test_mae": test}}))


def write_grid(lr_grid: ModuleType, root: Path, strategy: str,
               val: dict[str, tuple[float, float, float]]) -> None:
    for task, values in val.items():
        for lr, v in zip(lr_grid.GRID, values, strict=True):
            write(lr_grid.run_file(strategy, lr, task, results=root), v, 2 * v)


def test_lr_choice_needs_the_whole_grid_and_scales_each_task(
        bench: tuple[ModuleType, ModuleType], tmp_path: Path) -> None:
    lr_grid, _ = bench
    tasks = lr_grid.TUNING_TASKS
    # per-task ratios to the best: lr 1e-4 -> (2, 1, 1, 3) mean 1.75; 3e-4 -> (1, 1.5, 2, 3)
    # mean 1.875; 1e-3 -> (4, 3, 1, 1) mean 2.25. Raw MAEs differ by 1000x between tasks.
    val = {tasks[0]: (2.0, 1.0, 4.0), tasks[1]: (1000.0, 1500.0, 3000.0),
           tasks[2]: (0.01, 0.02, 0.01), tasks[3]: (3.0, 3.0, 1.0)}
    write_grid(lr_grid, tmp_path, "backbone-ft", val)
    write_grid(lr_grid, tmp_path, "adapter-ft", {t: v for t, v in val.items() if t != tasks[3]})
    choice = lr_grid.choose(results=tmp_path)
    assert choice["strategies"]["backbone-ft"]["lr"] == 1e-4
    assert choice["strategies"]["backbone-ft"]["score"] == pytest.approx(
        {"1e-4": 1.75, "3e-4": 1.875, "1e-3": 2.25})
    assert choice["pending"] == {"adapter-ft": 3, "amc-full": 12, "amc-adapter": 12}


def test_run_file_is_where_amc_tuning_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import amc_tuning
    import lr_grid
    from amc_results import result_path

    for strategy in lr_grid.STRATEGY_NAMES:
        for size in (None, 10):
            assert lr_grid.run_file(strategy, 3e-4, "jarvis_2d_eform", "seed1", size) == \
                result_path(amc_tuning.grid_run(strategy, 3e-4), "jarvis_2d_eform", "seed1",
                            size, "full")


def tuned_results(lr_grid: ModuleType, root: Path, amc_factor: dict[str, float],
                  skip: tuple[str, str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Complete grids (lr 3e-4 best everywhere) and tuned runs on 11 tasks x 3 splits; AMC's
    test MAE is the better baseline's times ``amc_factor[task]``."""
    flat = {t: (2.0, 1.0, 3.0) for t in lr_grid.TUNING_TASKS}
    for strategy in lr_grid.STRATEGY_NAMES:
        write_grid(lr_grid, root, strategy, flat)
    rng = np.random.default_rng(7)
    truth: dict[str, dict[str, np.ndarray]] = {}
    for task in TASKS:
        bb_val, ad_val = rng.uniform(1, 2, 3), rng.uniform(1, 2, 3)
        bb_test, ad_test = rng.uniform(1, 2, 3), rng.uniform(1, 2, 3)
        best = bb_test if bb_val.mean() < ad_val.mean() else ad_test
        amc = best * amc_factor[task] * rng.uniform(0.98, 1.02, 3)
        truth[task] = {"best": best, "amc": amc}
        for i, split in enumerate(("seed0", "seed1", "seed2")):
            if skip == (task, split):
                continue
            for strategy, v, t in (("backbone-ft", bb_val[i], bb_test[i]),
                                   ("adapter-ft", ad_val[i], ad_test[i]),
                                   ("amc-adapter", amc[i], amc[i])):
                write(lr_grid.run_file(strategy, 3e-4, task, split, results=root), v, t)
    return truth


def test_goal_met_with_the_named_paired_test(bench: tuple[ModuleType, ModuleType],
                                             tmp_path: Path) -> None:
    lr_grid, results_tuned = bench
    factor = {t: 0.8 for t in TASKS} | {"t3": 1.1}  # 10 of 11 tasks 20 % better
    truth = tuned_results(lr_grid, tmp_path, factor)
    choice = lr_grid.choose(results=tmp_path)
    cells = results_tuned.collect(choice, TASKS, None, tmp_path)
    c = results_tuned.compare(cells, "amc-adapter")
    rel = [(truth[t]["amc"].mean() - truth[t]["best"].mean()) / truth[t]["best"].mean()
           for t in TASKS]
    logs = np.concatenate([np.log(truth[t]["amc"] / truth[t]["best"]) for t in TASKS])
    assert (c["won"], c["n"], c["pairs"]) == (10, 11, 33)
    assert c["rel"] == pytest.approx(np.mean(rel))
    assert c["p"] == pytest.approx(wilcoxon(logs).pvalue)
    text = "\n".join(results_tuned.tuned_sections(TASKS, tmp_path))
    assert "Wilcoxon signed-rank test (two-sided)" in text
    assert "amc-adapter against the best tuned single-base fine-tune" in text
    assert "10 of 11 tasks" in text and ": met." in text
    assert "| amc-adapter | 3e-4 |" in text and "(chosen)" in text


def test_partial_results_are_pending_not_judged(bench: tuple[ModuleType, ModuleType],
                                                tmp_path: Path) -> None:
    lr_grid, results_tuned = bench
    tuned_results(lr_grid, tmp_path, {t: 0.8 for t in TASKS}, skip=("t5", "seed2"))
    text = "\n".join(results_tuned.tuned_sections(TASKS, tmp_path))
    goal = next(line for line in text.splitlines() if line.startswith("- amc-adapter against"))
    assert "pending: 10 of 11 tasks have AMC and both baselines on 3 splits" in goal
    row = next(line for line in text.splitlines() if line.startswith("| t5 |"))
    assert "(2)" in row  # the t5 cells average the two splits that exist
    amc_full = next(line for line in text.splitlines() if line.startswith("- amc-full against"))
    assert "no task yet" in amc_full
