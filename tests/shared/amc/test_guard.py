"""The guard keeps the lower validation MAE and says so in one sentence."""

from __future__ import annotations

import numpy as np

from moma.amc.guard import best_single_index, decide


def test_lower_validation_mae_is_kept_and_named() -> None:
    kept_base = decide("the amc composition (average)", 0.12, "the fine-tuned base (abc)", 0.10)
    assert kept_base.kept == "baseline"
    assert kept_base.sentence("eV") == (
        "guard: kept the fine-tuned base (abc), validation MAE 0.1 eV against 0.12 eV for the "
        "amc composition (average) (0.02 eV, 16.7 % lower)")
    kept_amc = decide("the amc composition (top1)", 0.08, "the fine-tuned base (abc)", 0.10)
    assert kept_amc.kept == "composed"
    assert abs(kept_amc.to_json()["difference"] - 0.02) < 1e-12
    assert decide("c", 0.1, "b", 0.1).kept == "composed"  # a tie keeps the composition


def test_best_single_module_is_the_lowest_proxy() -> None:
    assert best_single_index(np.array([0.3, 0.1, np.nan, 0.2]), 4) == 1
    assert best_single_index(None, 3) == 0
