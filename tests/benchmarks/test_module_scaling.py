"""``benchmarks/module_scaling.py`` end to end on a tiny configuration.

The imported MoE-(18) CGCNNs as the pool, one small task, k = 1 and 2 with two draws each and a
2-epoch fine-tune: every draw is the recorded seed's draw from the recorded pool, compose saw
exactly the drawn modules, the base line and the figure are written, and a second invocation
reuses every result file. The draws themselves (different subsets, reproduced by the recorded
seeds) are checked in the default run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TASK = "jarvis_2d_gap_tbmbj"


@pytest.mark.slow
def test_module_scaling_on_moe18(tmp_path: Path) -> None:
    env = {**os.environ, "MOMA_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    results, figure = tmp_path / "results", tmp_path / "scaling.png"
    command = [sys.executable, str(BENCH / "module_scaling.py"), "--family", "moe18",
               "--tasks", TASK, "--ks", "1,2", "--draws", "2", "--epochs", "2", "--base",
               "--results", str(results), "--plot", str(figure)]
    subprocess.run(command, check=True, env=env, cwd=BENCH, capture_output=True)

    files = sorted((results / "scaling" / "moe18" / TASK).glob("seed0-k*-d*-amc-top1.json"))
    assert [f.name[:11] for f in files] == ["seed0-k1-d0", "seed0-k1-d1", "seed0-k2-d0",
                                            "seed0-k2-d1"]
    maes: dict[int, list[float]] = {}
    for f in files:
        report = json.loads(f.read_text())
        run = report["run"]
        assert run["draw_seed"] == 1000 * run["k"] + run["draw"]
        assert len(run["pool"]) == 18 and run["pool"] == sorted(run["pool"])
        picked = np.random.default_rng(run["draw_seed"]).choice(18, run["k"], replace=False)
        assert run["drawn"] == [run["pool"][i] for i in sorted(picked)]
        assert sorted(c["name"] for c in report["candidates"]) == sorted(run["drawn"])
        assert report["metrics"]["test_mae"] > 0
        maes.setdefault(run["k"], []).append(report["metrics"]["test_mae"])
    assert len({tuple(json.loads(f.read_text())["run"]["drawn"]) for f in files}) == 4

    base = results / "full" / "cgcnn" / TASK / "seed0-all-backbone-ft.json"
    summary = json.loads((results / "scaling" / "moe18" / "summary.json").read_text())
    entry = summary["tasks"][TASK]
    assert entry["points"] == {str(k): v for k, v in maes.items()}
    assert entry["bases"]["mp_eform fine-tuned"] == json.loads(
        base.read_text())["metrics"]["test_mae"]
    assert figure.stat().st_size > 10_000

    stamps = [f.stat().st_mtime_ns for f in [*files, base]]
    again = subprocess.run(command, check=True, env=env, cwd=BENCH, capture_output=True,
                           text=True)
    assert "test MAE" not in again.stdout  # nothing ran again
    assert [f.stat().st_mtime_ns for f in [*files, base]] == stamps


def test_draws_differ_and_are_reproduced_by_their_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    from module_scaling import draws

    for pool, k in ((3, 2), (9, 8), (18, 1), (11, 4)):
        drawn = draws(pool, k, 3)
        subsets = [tuple(s) for _, s in drawn]
        assert len(drawn) == 3 and len(set(subsets)) == 3
        for seed, subset in drawn:
            assert len(subset) == k and subset == sorted(subset)
            again = np.random.default_rng(seed).choice(pool, k, replace=False)
            assert subset == sorted(again.tolist())
    assert len(draws(3, 3, 3)) == 1  # only one subset of 3 out of 3
    assert draws(11, 4, 3) == draws(11, 4, 3)
