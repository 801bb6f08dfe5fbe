"""The graph cache: a second run on the same data does no neighbour search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from moma.backbones.base import Graph
from moma.backbones.cgcnn.featurizer import CGCNNFeaturizer
from moma.graphs.cache import featurize
from tests.conftest import to_structure


class CountingFeaturizer(CGCNNFeaturizer):
    """The real CGCNN featurizer, counting how often it runs."""

    calls = 0

    def featurize(self, structure: Structure, record_id: str) -> Graph:
        CountingFeaturizer.calls += 1
        return super().featurize(structure, record_id)


def test_second_run_reads_cache_and_equals_first(tmp_path: Path,
                                                 jarvis_2d_eform: dict[str, Any]) -> None:
    items = [(r["id"], to_structure(r)) for r in jarvis_2d_eform["records"][:40]]
    items.append(("lonely", Structure(Lattice.cubic(20.0), ["Fe"], [[0, 0, 0]])))
    featurizer = CountingFeaturizer()
    first = featurize(featurizer, items, cache=tmp_path)
    assert not first.cache_hit and CountingFeaturizer.calls == 41
    assert [r.id for r in first.rejected] == ["lonely"]
    second = featurize(featurizer, items, cache=tmp_path)
    assert second.cache_hit and CountingFeaturizer.calls == 41
    assert second.ids == first.ids and [r.id for r in second.rejected] == ["lonely"]
    for a, b in zip(first.graphs, second.graphs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key])


def test_changed_structure_or_config_misses_cache(tmp_path: Path,
                                                  jarvis_2d_eform: dict[str, Any]) -> None:
    items = [(r["id"], to_structure(r)) for r in jarvis_2d_eform["records"][:5]]
    featurize(CGCNNFeaturizer(), items, cache=tmp_path)
    moved = items[0][1].copy()
    moved.translate_sites([0], [0.01, 0, 0])
    changed = [(items[0][0], moved), *items[1:]]
    assert not featurize(CGCNNFeaturizer(), changed, cache=tmp_path).cache_hit
    assert featurize(CGCNNFeaturizer(), items, cache=tmp_path).cache_hit


def test_damaged_cache_file_is_recomputed(tmp_path: Path,
                                          jarvis_2d_eform: dict[str, Any]) -> None:
    items = [(r["id"], to_structure(r)) for r in jarvis_2d_eform["records"][:5]]
    first = featurize(CGCNNFeaturizer(), items, cache=tmp_path)
    assert first.cache_file is not None
    first.cache_file.write_bytes(b"garbage")
    again = featurize(CGCNNFeaturizer(), items, cache=tmp_path)
    assert not again.cache_hit and len(again.graphs) == 5


def test_empty_arrays_round_trip(tmp_path: Path, jarvis_2d_eform: dict[str, Any]) -> None:
    """CHGNet graphs of crystals without bonds hold (0, 5) arrays; the cache keeps them."""
    from moma.backbones.chgnet.backbone import CHGNetBackbone

    records = jarvis_2d_eform["records"][:40]
    items = [(r["id"], to_structure(r)) for r in records]
    featurizer = CHGNetBackbone().featurizer()
    first = featurize(featurizer, items, cache=tmp_path)
    assert any(g["bond_graph"].shape[0] == 0 for g in first.graphs)
    second = featurize(featurizer, items, cache=tmp_path)
    assert second.cache_hit
    for a, b in zip(first.graphs, second.graphs, strict=True):
        for key in a:
            assert a[key].shape == b[key].shape and np.array_equal(a[key], b[key])
