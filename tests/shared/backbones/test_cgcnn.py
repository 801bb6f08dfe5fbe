"""CGCNN: the architecture and featurization reproduce the MoE-(18) modules' predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from safetensors.torch import load_file
from scipy.stats import spearmanr

from moma.backbones.cgcnn.backbone import CGCNNBackbone
from moma.backbones.cgcnn.featurizer import GAUSS_CENTRES, MAX_NEIGHBOURS, PAD_DISTANCE
from moma.backbones.cgcnn.model import gaussian_expand
from moma.errors import DataError
from moma.graphs.cache import featurize
from moma.training.loop import embed_graphs, predict_standardized
from tests.conftest import to_structure


@pytest.fixture(scope="module")
def backbone() -> CGCNNBackbone:
    return CGCNNBackbone()


def _predict(backbone: CGCNNBackbone, moe18: Any, manifest: dict[str, Any], task: str,
             structures: list[tuple[str, Structure]]) -> np.ndarray:
    model = backbone.build()
    model.load_state_dict(load_file(str(moe18 / f"{task}.safetensors")), strict=True)
    graphs = featurize(backbone.featurizer(), structures, cache=False).graphs
    norm = manifest[task]["normalizer"]
    return predict_standardized(backbone, model, graphs) * norm["std"] + norm["mean"]


def test_all_18_modules_load_strict(backbone: CGCNNBackbone, moe18: Any,
                                    moe18_manifest: dict[str, Any]) -> None:
    assert len(moe18_manifest) == 18
    for task, entry in moe18_manifest.items():
        model = backbone.build()
        result = model.load_state_dict(load_file(str(moe18 / entry["file"])), strict=True)
        assert not result.missing_keys and not result.unexpected_keys, task


def test_castelli_eform_module_reproduces_castelli_formation_energies(
        backbone: CGCNNBackbone, moe18: Any, moe18_manifest: dict[str, Any],
        castelli: dict[str, Any]) -> None:
    records = castelli["records"]
    structures = [(r["id"], to_structure(r)) for r in records]
    pred = _predict(backbone, moe18, moe18_manifest, "castelli_eform", structures)
    y = np.array([r["e_form"] for r in records])
    mae = float(np.mean(np.abs(pred - y)))
    print(f"castelli_eform on {len(y)} castelli perovskites: MAE {mae:.4f} eV")
    assert mae <= 0.05
    assert mae < 0.2 * float(np.mean(np.abs(y - y.mean())))


def test_jarvis_eform_module_ranks_2d_formation_energies(
        backbone: CGCNNBackbone, moe18: Any, moe18_manifest: dict[str, Any],
        jarvis_2d_eform: dict[str, Any]) -> None:
    records = jarvis_2d_eform["records"]
    structures = [(r["id"], to_structure(r)) for r in records]
    pred = _predict(backbone, moe18, moe18_manifest, "jarvis_eform", structures)
    y = np.array([r["target"] for r in records])
    rho = float(spearmanr(pred, y).statistic)
    print(f"jarvis_eform on jarvis_2d_eform ({len(y)}): Spearman {rho:.3f}")
    assert rho > 0.9


def test_graph_shapes_and_padding(backbone: CGCNNBackbone) -> None:
    # A sparse lattice: each Na has only its 6 periodic images within 8 Å -> padding used.
    structure = Structure(Lattice.cubic(7.5), ["Na"], [[0, 0, 0]])
    graph = backbone.featurizer().featurize(structure, "sparse")
    assert graph["nbr_index"].shape == (1, MAX_NEIGHBOURS)
    distances = graph["nbr_dist"][0]
    assert np.allclose(distances[:6], 7.5, atol=1e-5)
    assert np.all(distances[6:] == PAD_DISTANCE)
    assert np.all(np.diff(distances) >= 0)


def test_neighbours_sorted_nearest_twelve(backbone: CGCNNBackbone,
                                          jarvis_2d_eform: dict[str, Any]) -> None:
    structure = to_structure(jarvis_2d_eform["records"][0])
    graph = backbone.featurizer().featurize(structure, "x")
    for i, site in enumerate(structure):
        ref = sorted(n.nn_distance for n in structure.get_neighbors(site, 8.0))[:MAX_NEIGHBOURS]
        assert np.allclose(graph["nbr_dist"][i][: len(ref)], ref, atol=1e-5)


def test_site_without_neighbours_is_rejected_with_record_id(backbone: CGCNNBackbone) -> None:
    lonely = Structure(Lattice.cubic(20.0), ["Fe"], [[0, 0, 0]])
    with pytest.raises(DataError, match=r"record 'lonely'.*no neighbour within 8.0 Å"):
        backbone.featurizer().featurize(lonely, "lonely")


def test_gaussian_expansion_matches_formula() -> None:
    d = torch.tensor([0.0, 1.234, 8.0])
    out = gaussian_expand(d)
    assert out.shape == (3, 41)
    expected = np.exp(-((d.numpy()[:, None] - GAUSS_CENTRES[None, :]) ** 2) / 0.04)
    assert np.allclose(out.numpy(), expected, atol=1e-6)
    assert out[0, 0] == pytest.approx(1.0) and out[2, 40] == pytest.approx(1.0)


def test_embedding_and_prediction_shapes(backbone: CGCNNBackbone,
                                         jarvis_2d_eform: dict[str, Any]) -> None:
    structures = [(r["id"], to_structure(r)) for r in jarvis_2d_eform["records"][:7]]
    graphs = featurize(backbone.featurizer(), structures, cache=False).graphs
    model = backbone.build()
    assert embed_graphs(backbone, model, graphs, batch_size=3).shape == (7, 64)
    assert predict_standardized(backbone, model, graphs, batch_size=4).shape == (7,)
    # Batching must not mix crystals: one-by-one equals batched.
    single = np.concatenate([embed_graphs(backbone, model, [g]) for g in graphs])
    assert np.allclose(single, embed_graphs(backbone, model, graphs), atol=1e-5)


def test_fast_collate_equals_pyg_from_data_list(backbone: CGCNNBackbone,
                                                jarvis_2d_eform: dict[str, Any]) -> None:
    structures = [(r["id"], to_structure(r)) for r in jarvis_2d_eform["records"][:9]]
    graphs = featurize(backbone.featurizer(), structures, cache=False).graphs
    fast, ref = backbone.collate(graphs), backbone.collate_reference(graphs)
    assert fast.num_graphs == ref.num_graphs == 9
    for key in ("atomic_numbers", "nbr_index", "nbr_dist", "batch", "ptr"):
        assert torch.equal(getattr(fast, key), getattr(ref, key)), key
    moved = fast.to("cpu")
    assert moved.num_graphs == 9
