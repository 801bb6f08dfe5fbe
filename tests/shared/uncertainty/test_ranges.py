"""Physical ranges: declared per task, parsed from --range, clipped or flagged."""

from __future__ import annotations

import numpy as np
import pytest

from moma.errors import MomaError
from moma.uncertainty.ranges import PhysicalRange, apply_range, parse_range, range_for


def test_dielectric_predictions_below_one_are_clipped_and_counted() -> None:
    rng = range_for("jarvis_2d_dielectric_tbmbj")
    assert rng is not None and rng.low == 1.0 and rng.high is None
    outcome = apply_range([-33.0, 0.5, 2.0, 40.0], rng, "clip")
    np.testing.assert_array_equal(outcome.values, [1.0, 1.0, 2.0, 40.0])
    assert outcome.outside.tolist() == [True, True, False, False]
    assert "2 of 4 predictions" in outcome.sentence(rng) and "clipped" in outcome.sentence(rng)


def test_flag_policy_keeps_values_and_poisson_has_two_bounds() -> None:
    rng = range_for("mp_poisson_ratio")
    assert rng is not None
    outcome = apply_range([-1.2, 0.3, 0.7], rng, "flag")
    np.testing.assert_array_equal(outcome.values, [-1.2, 0.3, 0.7])
    assert outcome.outside.tolist() == [True, False, True]
    assert range_for("jarvis_2d_eform") is None


def test_parse_range_forms_and_errors() -> None:
    assert parse_range("0:") == PhysicalRange(0.0, None, "declared with --range")
    assert parse_range("-1:0.5").high == 0.5
    for bad in ("5", ":", "a:b", "2:1", "inf:"):
        with pytest.raises(MomaError, match="range"):
            parse_range(bad)
    with pytest.raises(MomaError, match="policy"):
        apply_range([1.0], None, "drop")
    assert PhysicalRange.from_json(parse_range("0:1").to_json()) == parse_range("0:1")
