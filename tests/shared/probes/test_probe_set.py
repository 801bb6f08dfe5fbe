"""The default probe set: deterministic, bounded, featurizable by both backbones' rules."""

from __future__ import annotations

import json

import pytest

from moma.backbones.registry import get_backbone
from moma.errors import DataError
from moma.graphs.cache import featurize
from moma.probes.probe_set import (
    DEFAULT_NAME,
    PROTOTYPES,
    default_records,
    parse_probe_set,
    probe_set_from_records,
)


def test_default_set_is_deterministic_and_hashed() -> None:
    a = probe_set_from_records(DEFAULT_NAME, default_records())
    b = probe_set_from_records(DEFAULT_NAME, default_records())
    assert a.sha256 == b.sha256 and len(a) == 32 * len(PROTOTYPES)
    other = probe_set_from_records(DEFAULT_NAME, default_records(seed=1))
    assert other.sha256 != a.sha256
    assert parse_probe_set(a.canonical, source="wire").sha256 == a.sha256
    # every structure type is present and no two probes are the same structure
    assert {i.split("-")[0] for i in a.ids} == set(PROTOTYPES)
    assert len({s.composition.reduced_formula + str(round(s.volume, 3))
                for s in a.structures}) > 0.9 * len(a)


def test_default_set_featurizes_with_cgcnn() -> None:
    probe_set = probe_set_from_records(DEFAULT_NAME, default_records(per_prototype=4))
    result = featurize(get_backbone("cgcnn").featurizer(), probe_set.items(), cache=False)
    assert not result.rejected and len(result.graphs) == len(probe_set)


@pytest.mark.parametrize(("records", "needle"), [
    ([], "1 to"),
    ([{"id": "a"}], "not a structure record"),
    ([{"id": "a", "structure": {"lattice": [[3, 0, 0], [0, 3, 0], [0, 0, 3]],
                                "species": ["Na"], "frac_coords": [[0, 0, 0]]}}] * 2,
     "duplicate id"),
])
def test_bad_probe_sets_are_refused(records: list[dict[str, object]], needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        probe_set_from_records("bad", records)  # type: ignore[arg-type]


def test_parse_refuses_non_json() -> None:
    with pytest.raises(DataError, match="not UTF-8 JSON"):
        parse_probe_set(b"\x80\x81", source="x")
    with pytest.raises(DataError, match="list of records"):
        parse_probe_set(json.dumps({"a": 1}).encode(), source="x")
