"""Data-overlap fingerprints on real structures: canonical forms, the filter, the verdict."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pymatgen.core import Structure

from moma.data_overlap.canonical import canonical_form
from moma.data_overlap.fingerprint import DataFingerprint, build_fingerprint, overlap
from moma.errors import MomaError
from tests.conftest import load_raw, to_structure


@pytest.fixture(scope="module")
def gap() -> dict[str, Any]:
    return load_raw("jarvis_2d_gap_tbmbj")


def test_canonical_form_ignores_site_order_and_supercells(gap: dict[str, Any]) -> None:
    structure = to_structure(gap["records"][3])
    key = canonical_form(structure)
    sites = list(structure)
    random.Random(0).shuffle(sites)
    assert canonical_form(Structure.from_sites(sites)) == key
    bigger = structure.copy()
    bigger.make_supercell([1, 2, 1])
    assert canonical_form(bigger) == key
    moved = structure.copy()
    moved.apply_strain(0.01)
    assert canonical_form(moved) != key
    keys = {canonical_form(to_structure(r)) for r in gap["records"]}
    assert len(keys) == len(gap["records"])  # distinct crystals stay distinct


def test_overlap_found_for_seen_structures_only(gap: dict[str, Any]) -> None:
    keys = [canonical_form(to_structure(r)) for r in gap["records"]]
    split = gap["splits"]["seed0"]
    test_keys = [keys[i] for i in split["test"]]
    train_keys = [keys[i] for i in split["train"]]
    seen = build_fingerprint(train_keys + test_keys[:5])
    clean = DataFingerprint.from_json(build_fingerprint(train_keys).to_json())
    verdict = overlap(DataFingerprint.from_json(seen.to_json()), test_keys)
    assert verdict.overlapping and verdict.matches >= 5
    assert not overlap(clean, test_keys).overlapping
    assert verdict.sentence().startswith(f"{verdict.matches} of {len(set(test_keys))} ")


def test_salts_differ_and_bad_entries_are_refused() -> None:
    a, b = build_fingerprint(["x", "y"]), build_fingerprint(["x", "y"])
    assert a.salt != b.salt
    entry = a.to_json()
    for key, value in (("format", "other"), ("m_bits", 10**9), ("bits", "!!"), ("salt", "00")):
        with pytest.raises(MomaError, match="data_fingerprint"):
            DataFingerprint.from_json({**entry, key: value})
