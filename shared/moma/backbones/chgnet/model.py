"""CHGNet's interaction layers as a MoMa model: mean-pooled embedding, ``chgnet.mlp`` head."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from chgnet.model.model import BatchedGraph, CHGNet
from torch import Tensor, nn
from torch_geometric.utils import scatter

from moma.backbones.base import AdapterSite, BackboneModel
from moma.backbones.chgnet.checkpoint import WEIGHTS_VERSION
from moma.backbones.chgnet.featurizer import CHGNetBatch


class CHGNetModel(BackboneModel):
    """CHGNet's interaction layers with a mean-pooled embedding and an MLP head (``chgnet.mlp``)."""

    head_prefixes: ClassVar[tuple[str, ...]] = ("chgnet.mlp.",)

    def __init__(self, model_args: Mapping[str, Any]) -> None:
        super().__init__()
        args = {**model_args, "composition_model": None, "version": WEIGHTS_VERSION}
        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its parameter count
            # mlp_out_bias=False is what CHGNet.load uses for the 0.3.0 weights.
            self.chgnet = CHGNet(**args, mlp_out_bias=False)
        self.embedding_dim = int(self.chgnet.atom_fea_dim)

    def atom_features(self, batch: CHGNetBatch) -> tuple[Tensor, Tensor]:
        """Per-atom features after the last atom conv and ``readout_norm``, and each atom's crystal.

        This is the message passing of ``CHGNet._compute`` (chgnet 0.4.2) without the readout,
        magnetic moments, forces or stress.
        """
        net = self.chgnet
        g = BatchedGraph.from_graphs(
            batch.graphs,
            bond_basis_expansion=net.bond_basis_expansion,
            angle_basis_expansion=net.angle_basis_expansion,
            compute_stress=False,
        )
        atom_feas = net.atom_embedding(g.atomic_numbers - 1)  # row 0 is hydrogen
        bond_feas = net.bond_embedding(g.bond_bases_ag)
        bond_weights_ag = net.bond_weights_ag(g.bond_bases_ag)
        bond_weights_bg = net.bond_weights_bg(g.bond_bases_bg)
        angle_feas = net.angle_embedding(g.angle_bases) if len(g.angle_bases) else None
        atom_kwargs = {"bond_weights": bond_weights_ag, "atom_graph": g.batched_atom_graph,
                       "directed2undirected": g.directed2undirected}
        for atom_layer, bond_layer, angle_layer in zip(
            net.atom_conv_layers[:-1], net.bond_conv_layers, net.angle_layers, strict=False
        ):
            atom_feas = atom_layer(atom_feas=atom_feas, bond_feas=bond_feas, **atom_kwargs)
            if angle_feas is not None and bond_layer is not None:
                bond_feas = bond_layer(atom_feas=atom_feas, bond_feas=bond_feas,
                                       bond_weights=bond_weights_bg, angle_feas=angle_feas,
                                       bond_graph=g.batched_bond_graph)
                if angle_layer is not None:
                    angle_feas = angle_layer(atom_feas=atom_feas, bond_feas=bond_feas,
                                             angle_feas=angle_feas,
                                             bond_graph=g.batched_bond_graph)
        atom_feas = net.atom_conv_layers[-1](atom_feas=atom_feas, bond_feas=bond_feas,
                                             **atom_kwargs)
        if net.readout_norm is not None:
            atom_feas = net.readout_norm(atom_feas)
        return atom_feas, g.atom_owners.long()

    def embed(self, batch: CHGNetBatch) -> Tensor:
        atom_feas, owners = self.atom_features(batch)
        return scatter(atom_feas, owners, dim=0, dim_size=batch.num_graphs, reduce="mean")

    def predict_from_embedding(self, embedding: Tensor) -> Tensor:
        return self.chgnet.mlp(embedding).squeeze(-1)

    def reset_head(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default ``nn.Linear`` init on every head layer, drawn from ``generator``."""
        for layer in self.chgnet.mlp.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    bound = 1.0 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    def adapter_sites(self) -> list[AdapterSite]:
        return [AdapterSite(f"atom_conv{i}", f"chgnet.atom_conv_layers.{i}", self.embedding_dim)
                for i in range(len(self.chgnet.atom_conv_layers))]
