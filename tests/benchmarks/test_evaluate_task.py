"""``benchmarks/evaluate_task.py`` end to end on a task file it has never seen (a renamed one).

A smoke-profile hub (1 epoch, castelli subsample of 64) is built into a temporary
``MOMA_RUNS`` by ``amc_hub.py``, with the renamed task's own original among its sources: the
overlap rule must find it by content, since its name no longer matches.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moma.paths import downstream_task_path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SOURCES = "castelli_e_form,castelli_dir_gap,jarvis_2d_dielectric_tbmbj"
FAMILIES = ("chgnet-adapter", "chgnet-full", "cgcnn-full")


@pytest.mark.slow
def test_evaluate_task_on_a_renamed_task(tmp_path: Path) -> None:
    original = json.loads(gzip.decompress(
        downstream_task_path("jarvis_2d_dielectric_tbmbj").read_bytes()))
    renamed = {**original, "task": "unseen_dielectric_task"}
    data = tmp_path / "unseen_dielectric_task.json.gz"
    data.write_bytes(gzip.compress(json.dumps(renamed).encode()))
    env = {**os.environ, "MOMA_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    family_args = [arg for family in FAMILIES for arg in ("--family", family)]
    subprocess.run([sys.executable, str(BENCH / "amc_hub.py"), *family_args, "--profile",
                    "smoke", "--sources", SOURCES], check=True, env=env, cwd=BENCH)
    done = subprocess.run([sys.executable, str(BENCH / "evaluate_task.py"), "--data", str(data),
                           "--split", "seed0", "--epochs", "1", "--json"],
                          check=True, env=env, cwd=BENCH, capture_output=True, text=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    assert summary["task"] == "unseen_dielectric_task"
    assert "same task" in summary["excluded_sources"]["jarvis_2d_dielectric_tbmbj"]
    assert not any(s.startswith("castelli_") for s in summary["excluded_sources"])
    rows = {r["strategy"]: r for r in summary["rows"]}
    assert set(rows) == {"chgnet backbone-ft", "chgnet adapter-ft", "chgnet amc-adapter",
                         "chgnet amc-full", "cgcnn backbone-ft", "cgcnn amc-full"}
    for name in ("chgnet amc-adapter", "chgnet amc-full", "cgcnn amc-full"):
        parents = [p["name"] for p in rows[name]["composed_from"]]
        assert parents and all(p.startswith("castelli_") for p in parents), (name, parents)
    assert summary["winner"] == min(rows.values(), key=lambda r: r["val_mae"])["strategy"]

    split = original["splits"]["seed0"]
    targets = np.array([float(r["target"]) for r in original["records"]])
    train_mean = np.mean(targets[split["train"]])
    expected = float(np.mean(np.abs(targets[split["test"]] - train_mean)))
    for row in rows.values():
        assert row["test_mae_train_mean"] == pytest.approx(expected, rel=1e-9)
        assert np.isfinite(row["test_mae"]) and row["test_mae"] > 0
