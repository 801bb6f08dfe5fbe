"""The CHGNet backbone against chgnet's own code paths, on real 2D-materials structures."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

import numpy as np
import pytest
import torch
from chgnet.model import CHGNet
from pymatgen.core import Lattice, Structure
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save
from safetensors.torch import save as st_save
from torch_geometric.utils import scatter

from moma.backbones.adapters import freeze_for_adapter_training, insert_adapters
from moma.backbones.base import Graph
from moma.backbones.chgnet.backbone import CHGNetBackbone
from moma.backbones.chgnet.checkpoint import checkpoint_path, read_checkpoint
from moma.backbones.chgnet.featurizer import GRAPH_DTYPES
from moma.backbones.chgnet.model import CHGNetModel
from moma.backbones.registry import get_backbone
from moma.errors import DataError
from moma.paths import downstream_task_path

N_STRUCTURES = 16


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    with gzip.open(downstream_task_path("jarvis_2d_eform")) as handle:
        return json.load(handle)["records"][:N_STRUCTURES]


@pytest.fixture(scope="module")
def structures(records: list[dict[str, Any]]) -> list[Structure]:
    return [Structure(r["structure"]["lattice"], r["structure"]["species"],
                      r["structure"]["frac_coords"]) for r in records]


@pytest.fixture(scope="module")
def backbone() -> CHGNetBackbone:
    return CHGNetBackbone()


@pytest.fixture(scope="module")
def graphs(backbone: CHGNetBackbone, structures: list[Structure],
           records: list[dict[str, Any]]) -> list[Graph]:
    featurizer = backbone.featurizer()
    return [featurizer.featurize(s, r["id"]) for s, r in zip(structures, records, strict=True)]


@pytest.fixture(scope="module")
def pretrained(backbone: CHGNetBackbone) -> CHGNetModel:
    return backbone.build_pretrained().eval()


@pytest.fixture(scope="module")
def reference() -> CHGNet:
    """chgnet's own model, built exactly as CHGNet.load does but from the parsed checkpoint."""
    state, args = read_checkpoint(checkpoint_path())
    return CHGNet.from_dict({"state_dict": state, "model_args": args},
                            mlp_out_bias=False, version="0.3.0").eval()


def test_registry_and_config(backbone: CHGNetBackbone) -> None:
    assert isinstance(get_backbone("chgnet"), CHGNetBackbone)
    config = backbone.featurizer().config()
    assert config["atom_graph_cutoff"] == 6.0
    assert config["bond_graph_cutoff"] == 3.0
    assert config["chgnet_version"] == "0.4.2"
    assert config["algorithm"] == "fast"
    assert backbone.describe()["version"] == "0.3.0"


def test_pretrained_weights_equal_torch_load(backbone: CHGNetBackbone) -> None:
    ref = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    ref_state = ref["model"]["state_dict"]
    ours = backbone.build_pretrained().state_dict()
    assert set(ours) == {f"chgnet.{k}" for k in ref_state} - {"chgnet.composition_model.fc.weight"}
    for key, value in ours.items():
        assert torch.equal(value, ref_state[key.removeprefix("chgnet.")]), key
    assert sum(v.numel() for v in ours.values()) == 412_525 - 94  # CHGNet minus AtomRef


def test_pretrained_base_sha_and_copies(backbone: CHGNetBackbone) -> None:
    state, digest = backbone.pretrained_base()
    expected = hashlib.sha256(st_save(dict(sorted(state.items())))).hexdigest()
    assert digest == expected
    assert not any(key.startswith("chgnet.composition_model") for key in state)
    model_state = backbone.build_pretrained().state_dict()
    assert list(state) == list(model_state)
    assert all(torch.equal(state[k], model_state[k]) for k in state)
    state["chgnet.mlp.layers.0.weight"].zero_()  # callers get copies
    again, digest_again = backbone.pretrained_base()
    assert digest_again == digest and again["chgnet.mlp.layers.0.weight"].abs().sum() > 0


def test_embed_equals_chgnet_crystal_fea_mean(backbone: CHGNetBackbone, graphs: list[Graph],
                                               structures: list[Structure],
                                               pretrained: CHGNetModel,
                                               reference: CHGNet) -> None:
    with torch.no_grad():
        ours = pretrained.embed(backbone.collate(graphs))
    assert ours.shape == (N_STRUCTURES, 64)
    assert not ours.requires_grad
    their_graphs = [reference.graph_converter(s) for s in structures]
    out = reference(their_graphs, task="e", return_crystal_feas=True)
    n_atoms = torch.tensor([len(s) for s in structures], dtype=torch.float32)
    expected = out["crystal_fea"].detach() / n_atoms[:, None]
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0)
    # The embedding is a mean of LayerNorm outputs: not a sum that grows with the atom count.
    assert ours.abs().max() < 10


def test_energy_on_our_graphs_equals_predict_structure(
        backbone: CHGNetBackbone, graphs: list[Graph], structures: list[Structure],
        pretrained: CHGNetModel, reference: CHGNet) -> None:
    batch = backbone.collate(graphs)
    with torch.no_grad():
        atom_feas, owners = pretrained.atom_features(batch)
        site_energy = pretrained.chgnet.mlp(atom_feas).squeeze(-1)
        energy = scatter(site_energy, owners, dim=0, dim_size=batch.num_graphs, reduce="mean")
        energy = energy + reference.composition_model(batch.graphs)
    predicted = reference.predict_structure(structures, task="e", batch_size=N_STRUCTURES)
    assert isinstance(predicted, list)
    expected = torch.tensor([float(p["e"]) for p in predicted])
    assert torch.allclose(energy, expected, atol=1e-5, rtol=0)
    assert expected.min() < -3.0  # real eV/atom energies, not zeros


def test_adapters_identity_then_only_adapters_and_head_train(
        backbone: CHGNetBackbone, graphs: list[Graph]) -> None:
    model = backbone.build_pretrained()
    model.reset_head(torch.Generator().manual_seed(0))
    batch = backbone.collate(graphs[:8])
    with torch.no_grad():
        before = model(batch)
    sites = insert_adapters(model)
    assert [s.module for s in sites] == [f"chgnet.atom_conv_layers.{i}" for i in range(4)]
    with torch.no_grad():
        after = model(batch)
    assert torch.allclose(before, after, atol=1e-6, rtol=0)

    freeze_for_adapter_training(model)
    frozen = {k: v.clone() for k, v in model.state_dict().items()
              if not k.startswith("adapters.") and not model.is_head_key(k)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    target = torch.linspace(-1.0, 1.0, batch.num_graphs)
    loss = torch.nn.functional.l1_loss(model(batch), target)
    loss.backward()
    optimizer.step()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    for i in range(4):  # every adapter got a gradient through its hook and moved
        assert state[f"adapters.atom_conv{i}.up.weight"].abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(model(batch), after, atol=1e-4)


def test_training_step_has_no_autograd_on_positions(backbone: CHGNetBackbone,
                                                    graphs: list[Graph]) -> None:
    model = backbone.build_pretrained()
    batch = backbone.collate(graphs[:4])
    assert not any(g.atom_frac_coord.requires_grad or g.lattice.requires_grad
                   for g in batch.graphs)
    model(batch).sum().backward()
    assert all(g.atom_frac_coord.grad is None and g.lattice.grad is None for g in batch.graphs)
    conv = model.get_parameter("chgnet.atom_conv_layers.0.twoBody_atom.mlp_core.layers.0.weight")
    assert conv.grad is not None and conv.grad.abs().sum() > 0
    assert model.chgnet.site_wise.weight.grad is None  # magnetic-moment readout unused


def test_graph_dict_round_trip_through_safetensors_and_collate(
        backbone: CHGNetBackbone, graphs: list[Graph], pretrained: CHGNetModel) -> None:
    for graph in graphs:
        assert set(graph) == set(GRAPH_DTYPES)
        assert all(graph[k].dtype == dtype for k, dtype in GRAPH_DTYPES.items())
        assert len(graph["directed2undirected"]) == 2 * len(graph["undirected2directed"])
        assert graph["bond_graph"].shape[1:] == (5,) and graph["atom_graph"].shape[1:] == (2,)
    # mp-23313 (InBi) has no bond within 3 Å: a crystal without angles is covered throughout.
    assert sum(len(g["bond_graph"]) == 0 for g in graphs) == 1
    cached = [np_load(np_save(g)) for g in graphs]  # how a graph cache stores them
    batch = backbone.collate(cached)
    assert batch.num_graphs == len(graphs)
    for graph, crystal in zip(graphs, batch.graphs, strict=True):
        for key in GRAPH_DTYPES:
            back = getattr(crystal, key).numpy()
            assert back.dtype == graph[key].dtype and np.array_equal(back, graph[key]), key
        assert crystal.atom_graph_cutoff == 6.0 and crystal.bond_graph_cutoff == 3.0
    with torch.no_grad():
        assert torch.equal(pretrained.embed(batch), pretrained.embed(backbone.collate(graphs)))


def test_device_argument_on_cpu(backbone: CHGNetBackbone, graphs: list[Graph],
                                pretrained: CHGNetModel) -> None:
    batch = backbone.collate(graphs[:3])
    with torch.no_grad():
        plain = pretrained(batch)
        moved = pretrained.to(torch.device("cpu"))(batch.to(torch.device("cpu")))
        by_name = pretrained(batch.to("cpu"))
    assert moved.shape == (3,)
    assert torch.equal(plain, moved) and torch.equal(plain, by_name)
    assert batch.n_atoms.tolist() == [len(g["atomic_number"]) for g in graphs[:3]]


def test_build_is_random_and_reset_head_only_touches_head(backbone: CHGNetBackbone,
                                                          pretrained: CHGNetModel) -> None:
    random_state = backbone.build().state_dict()
    pre_state = pretrained.state_dict()
    assert list(random_state) == list(pre_state)
    assert not torch.equal(random_state["chgnet.atom_embedding.embedding.weight"],
                           pre_state["chgnet.atom_embedding.embedding.weight"])
    a, b = backbone.build_pretrained(), backbone.build_pretrained()
    a.reset_head(torch.Generator().manual_seed(3))
    b.reset_head(torch.Generator().manual_seed(3))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    head = [k for k in sa if a.is_head_key(k)]
    assert len(head) == 8 and all(k.startswith("chgnet.mlp.") for k in head)
    assert all(not torch.equal(sa[k], pre_state[k]) for k in head)
    assert all(torch.equal(sa[k], pre_state[k]) for k in sa if k not in head)


def test_isolated_atom_is_a_data_error(backbone: CHGNetBackbone) -> None:
    alone = Structure(Lattice.cubic(20.0), ["Na"], [[0.0, 0.0, 0.0]])
    with pytest.raises(DataError, match=r"record 'lonely-na': site 0 \(Na\) has no neighbour"):
        backbone.featurizer().featurize(alone, "lonely-na")
    # A bonded pair plus one far-away atom: the isolated site is named.
    mixed = Structure(Lattice.cubic(30.0), ["O", "O", "Fe"],
                      [[0.0, 0.0, 0.0], [0.04, 0.0, 0.0], [0.5, 0.5, 0.5]])
    with pytest.raises(DataError, match=r"record 'mixed': site 2 \(Fe\)"):
        backbone.featurizer().featurize(mixed, "mixed")


def test_element_outside_chgnet_is_a_data_error(backbone: CHGNetBackbone) -> None:
    structure = Structure(Lattice.cubic(3.0), ["Am", "O"], [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    with pytest.raises(DataError, match=r"record 'am-o': element\(s\) Am"):
        backbone.featurizer().featurize(structure, "am-o")


def test_disordered_structure_is_a_data_error(backbone: CHGNetBackbone) -> None:
    structure = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}, "O"],
                          [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    with pytest.raises(DataError, match=r"record 'feco-o': the structure has partially occupied"):
        backbone.featurizer().featurize(structure, "feco-o")
