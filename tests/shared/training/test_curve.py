"""The learning curve written beside a module: per-epoch JSON in both units and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

from moma.training.curve import CURVE_JSON, CURVE_PNG, write_learning_curve
from moma.training.loop import EpochStats


def test_curve_files_hold_every_epoch_in_target_units(tmp_path: Path) -> None:
    history = [EpochStats(1, 0.9, 0.8, 0.1), EpochStats(2, 0.7, 0.5, 0.1),
               EpochStats(3, 0.6, 0.6, 0.1)]
    write_learning_curve(tmp_path, [history], target_std=2.0, unit="eV",
                         median_val_mae=1.5, labels=["guard"])
    data = json.loads((tmp_path / CURVE_JSON).read_text())
    curve = data["curves"][0]
    assert curve["best_epoch"] == 2 and curve["label"] == "guard"
    assert [e["val_mae"] for e in curve["epochs"]] == [1.6, 1.0, 1.2]
    assert data["median_predictor_val_mae"] == 1.5
    assert (tmp_path / CURVE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
