"""Applicability domain: near structures score low, far ones are flagged; the file is checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moma.errors import MomaError
from moma.uncertainty.domain import DOMAIN_FILE, fit_domain, load_domain, save_domain


def _cluster(rng: np.random.Generator, centre: np.ndarray, n: int) -> np.ndarray:
    return centre + 0.05 * rng.standard_normal((n, centre.size))


def test_far_structures_are_outside_and_near_ones_inside(rng: np.random.Generator) -> None:
    centre = rng.standard_normal(16)
    train, val = _cluster(rng, centre, 200), _cluster(rng, centre, 60)
    domain = fit_domain(train, val, k=5, quantile=0.95)
    near, far = _cluster(rng, centre, 50), _cluster(rng, -centre, 50)
    assert np.mean(domain.outside(domain.score(near))) < 0.2
    assert np.all(domain.outside(domain.score(far)))
    # about 5 % of the validation structures themselves lie above a 95 % threshold
    assert np.mean(domain.outside(domain.score(val))) == pytest.approx(0.05, abs=0.04)


def test_saved_domain_loads_and_a_tampered_file_is_refused(tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    domain = fit_domain(rng.standard_normal((30, 8)), rng.standard_normal((10, 8)))
    entry = save_domain(tmp_path, domain)
    loaded = load_domain(tmp_path, entry)
    assert loaded is not None and loaded.threshold == domain.threshold
    probe = rng.standard_normal((4, 8))
    np.testing.assert_allclose(loaded.score(probe), domain.score(probe), rtol=1e-6)
    (tmp_path / DOMAIN_FILE).write_bytes((tmp_path / DOMAIN_FILE).read_bytes()[:-4] + b"\0" * 4)
    with pytest.raises(MomaError, match="sha256"):
        load_domain(tmp_path, entry)
    assert load_domain(tmp_path / "absent", entry) is None
