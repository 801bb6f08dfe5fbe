"""The floor predictors and the flags for models that do not clearly beat them."""

from __future__ import annotations

import numpy as np

from moma.uncertainty.floor import floor_flags, floor_maes, floor_report


def test_floors_and_flags_on_a_heavy_tailed_target() -> None:
    train = np.array([1.0, 2.0, 3.0, 100.0])  # median 2.5, mean 26.5
    test = np.array([2.0, 3.0])
    floors = floor_maes(train, test)
    assert floors == {"train_mean": 24.0, "train_median": 0.5}
    assert floor_flags("test", 0.47, floors) == []  # 6 % below the median predictor
    flags = floor_flags("test", 0.49, floors, "eV")
    assert len(flags) == 1 and "train-median predictor's 0.5" in flags[0]
    assert "train-mean" not in flags[0]
    both = floor_flags("validation", 30.0, floors)
    assert "train-median predictor's 0.5 nor the train-mean predictor's 24" in both[0]
    report = floor_report(train, test, 0.1, test, 0.9)
    assert report["flags"] == [floor_flags("test", 0.9, floors)[0]]
