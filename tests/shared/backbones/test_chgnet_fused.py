"""CHGNet's layers with the first linear layer before the gather compute chgnet's numbers."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from chgnet.model.model import BatchedGraph
from pymatgen.core import Structure

from moma.backbones.base import Graph
from moma.backbones.chgnet import fused
from moma.backbones.chgnet.backbone import CHGNetBackbone
from moma.backbones.chgnet.prefix import fast_path
from moma.paths import downstream_task_path


@pytest.fixture(scope="module")
def backbone() -> CHGNetBackbone:
    return CHGNetBackbone()


@pytest.fixture(scope="module")
def graphs(backbone: CHGNetBackbone) -> list[Graph]:
    with gzip.open(downstream_task_path("mp_eps_electronic")) as handle:
        records = json.load(handle)["records"][:10]
    featurizer = backbone.featurizer()
    return [featurizer.featurize(Structure(r["structure"]["lattice"], r["structure"]["species"],
                                           r["structure"]["frac_coords"]), r["id"])
            for r in records]


def test_each_layer_and_its_input_gradients_match_chgnet(backbone: CHGNetBackbone,
                                                          graphs: list[Graph]) -> None:
    net = backbone.build_pretrained().chgnet
    g = BatchedGraph.from_graphs(backbone.collate(graphs).graphs,
                                 bond_basis_expansion=net.bond_basis_expansion,
                                 angle_basis_expansion=net.angle_basis_expansion,
                                 compute_stress=False)
    generator = torch.Generator().manual_seed(0)
    atoms = torch.randn((len(g.atomic_numbers), 64), generator=generator, requires_grad=True)
    bonds = torch.randn((len(g.bond_bases_ag), 64), generator=generator, requires_grad=True)
    angles = torch.randn((len(g.angle_bases), 64), generator=generator, requires_grad=True)
    weights_ag = net.bond_weights_ag(g.bond_bases_ag).detach()
    weights_bg = net.bond_weights_bg(g.bond_bases_bg).detach()
    plan = fused.messages(g.batched_atom_graph, g.directed2undirected, g.batched_bond_graph,
                          weights_ag, weights_bg, len(atoms), len(bonds))
    assert len(g.batched_bond_graph) > 0  # the batch has angles
    layers = {
        "atom": (lambda: net.atom_conv_layers[1](
                     atom_feas=atoms, bond_feas=bonds, bond_weights=weights_ag,
                     atom_graph=g.batched_atom_graph, directed2undirected=g.directed2undirected),
                 lambda: fused.atom_conv(net.atom_conv_layers[1], atoms, bonds, plan)),
        "bond": (lambda: net.bond_conv_layers[0](
                     atom_feas=atoms, bond_feas=bonds, bond_weights=weights_bg,
                     angle_feas=angles, bond_graph=g.batched_bond_graph),
                 lambda: fused.bond_conv(net.bond_conv_layers[0], atoms, bonds, angles, plan)),
        "angle": (lambda: net.angle_layers[0](
                      atom_feas=atoms, bond_feas=bonds, angle_feas=angles,
                      bond_graph=g.batched_bond_graph),
                  lambda: fused.angle_update(net.angle_layers[0], atoms, bonds, angles, plan)),
    }
    for name, (theirs, ours) in layers.items():
        results = []
        for run in (theirs, ours):
            out = run()
            seed = torch.Generator().manual_seed(1)
            out.backward(torch.randn(out.shape, generator=seed))
            results.append((out.detach(), [t.grad.clone() if t.grad is not None else None
                                           for t in (atoms, bonds, angles)]))
            for t in (atoms, bonds, angles):
                t.grad = None
        (want, want_grads), (got, got_grads) = results
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), name
        for i, (a, b) in enumerate(zip(want_grads, got_grads, strict=True)):
            assert (a is None) == (b is None), (name, i)
            if a is not None and b is not None:
                assert torch.allclose(b, a, atol=1e-4, rtol=1e-4), (name, i)


def test_full_model_predictions_and_weight_gradients_match(backbone: CHGNetBackbone,
                                                            graphs: list[Graph]) -> None:
    """Full fine-tuning trains the layers' own weights through the split first layer."""
    batch = backbone.collate(graphs)
    target = torch.linspace(-1.0, 1.0, batch.num_graphs)
    results = {}
    for fast in (False, True):
        model = backbone.build_pretrained()
        model.train()
        with fast_path(fast):
            pred = model(batch)
            torch.nn.functional.l1_loss(pred, target).backward()
        results[fast] = (pred.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                         if p.grad is not None})
    (slow_pred, slow_grads), (fast_pred, fast_grads) = results[False], results[True]
    assert torch.allclose(slow_pred, fast_pred, atol=1e-5, rtol=1e-5)
    assert slow_grads.keys() == fast_grads.keys()
    assert "chgnet.bond_conv_layers.0.twoBody_bond.mlp_core.layers.0.weight" in fast_grads
    for name, grad in slow_grads.items():
        scale = float(grad.abs().max()) or 1.0
        assert float((grad - fast_grads[name]).abs().max()) <= 1e-4 * scale, name


def test_a_batch_without_angles_plans_empty_angle_messages() -> None:
    atom_graph = torch.tensor([[0, 1], [1, 0]], dtype=torch.int32)
    plan = fused.messages(atom_graph, torch.tensor([0, 0], dtype=torch.int32),
                          torch.zeros(0), torch.ones((1, 4)), torch.ones((1, 4)), 2, 1)
    assert plan.angle_rows.shape == (0, 3) and plan.angle_weights.shape == (0, 4)
    assert plan.atom_rows.tolist() == [[0, 3, 4], [1, 2, 4]]


def test_a_dropout_that_drops_is_refused() -> None:
    mlp = torch.nn.Module()
    mlp.layers = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(4, 4))
    mlp.train()
    with pytest.raises(ValueError, match="before the first linear layer"):
        fused._split_mlp(mlp)
