"""A calibration written to a card's extra and read back qualifies predictions the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moma.uncertainty.calibration import Calibration, annotate, calibrate
from moma.uncertainty.ranges import range_for


def test_card_round_trip_and_annotation(tmp_path: Path, rng: np.random.Generator) -> None:
    val_y = rng.uniform(1, 10, 40)
    val_pred = val_y + rng.normal(0, 1, 40)
    train_emb, val_emb = rng.standard_normal((80, 6)), rng.standard_normal((40, 6))
    cal = calibrate(val_y=val_y, val_pred=val_pred, train_embeddings=train_emb,
                    val_embeddings=val_emb, folder=tmp_path,
                    physical_range=range_for("mp_poly_total"))
    extra = cal.card_extra()
    again = Calibration.from_card_extra(extra, tmp_path)
    assert again.conformal == cal.conformal and again.domain is not None
    parts = [np.array([-2.0, 5.0, 6.0]), np.array([0.0, 5.0, 8.0])]
    result = annotate(again, parts, [0.5, 0.5], rng.standard_normal((3, 6)))
    np.testing.assert_allclose(result.prediction, [1.0, 5.0, 7.0])  # -1.0 clipped to 1
    assert result.outside_range.tolist() == [True, False, False]
    assert result.lower is not None and result.lower[0] >= 1.0  # bounds clipped too
    assert result.spread is not None and result.spread[1] == 0.0 and result.spread[2] == 1.0
    rows = result.rows()
    assert rows[0]["raw_prediction"] == -1.0 and "domain_score" in rows[0]
    assert rows[1]["upper"] - rows[1]["prediction"] == cal.conformal.half_width  # type: ignore[union-attr]
