"""CHGNet's interaction layers as a MoMa model: mean-pooled embedding, ``chgnet.mlp`` head."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import torch
from chgnet.model.layers import AngleUpdate, AtomConv, BondConv
from chgnet.model.model import BatchedGraph, CHGNet
from torch import Tensor, nn
from torch_geometric.utils import scatter

from moma.backbones.adapters import has_adapters
from moma.backbones.base import AdapterSite, BackboneModel
from moma.backbones.chgnet import fused
from moma.backbones.chgnet.checkpoint import WEIGHTS_VERSION
from moma.backbones.chgnet.featurizer import CHGNetBatch
from moma.backbones.chgnet.prefix import (
    WeightsFingerprint,
    fast_path_enabled,
    prefix_batch,
    prefix_modules,
)


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
        self._fingerprint = WeightsFingerprint()

    def atom_features(self, batch: CHGNetBatch) -> tuple[Tensor, Tensor]:
        """Per-atom features after the last atom conv and ``readout_norm``, and each atom's crystal.

        This is the message passing of ``CHGNet._compute`` (chgnet 0.4.2) without the readout,
        magnetic moments, forces or stress. On the fast path (:mod:`.prefix`) a model with a
        frozen prefix takes the bases and the first convolution from the per-crystal cache, the
        last angle update, whose output nothing reads, is skipped, and every model runs the
        interaction layers of :mod:`.fused` (first linear layer before the gather).
        """
        net = self.chgnet
        fast = fast_path_enabled()
        if fast and self._prefix_frozen():
            p = prefix_batch(net, batch.graphs, self._fingerprint(prefix_modules(net)))
            bases_ag, bases_bg, angle_bases = p.bond_bases_ag, p.bond_bases_bg, p.angle_bases
            atom_graph, d2u, bond_graph = p.atom_graph, p.directed2undirected, p.bond_graph
            owners = p.atom_owners
            atom_feas = p.atom_conv0
            if has_adapters(self):
                adapter = self.get_submodule(f"adapters.{self.adapter_sites()[0].name}")
                atom_feas = adapter(atom_feas)
        else:
            g = BatchedGraph.from_graphs(
                batch.graphs,
                bond_basis_expansion=net.bond_basis_expansion,
                angle_basis_expansion=net.angle_basis_expansion,
                compute_stress=False,
            )
            bases_ag, bases_bg, angle_bases = g.bond_bases_ag, g.bond_bases_bg, g.angle_bases
            atom_graph, d2u, bond_graph = (g.batched_atom_graph, g.directed2undirected,
                                           g.batched_bond_graph)
            owners = g.atom_owners.long()
            atom_feas = None
        bond_feas = net.bond_embedding(bases_ag)
        atom_kwargs = {"bond_weights": net.bond_weights_ag(bases_ag), "atom_graph": atom_graph,
                       "directed2undirected": d2u}
        if atom_feas is None:
            atom_feas = net.atom_conv_layers[0](
                atom_feas=net.atom_embedding(g.atomic_numbers - 1),  # row 0 is hydrogen
                bond_feas=bond_feas, **atom_kwargs)
        bond_weights_bg = net.bond_weights_bg(bases_bg)
        angle_feas = net.angle_embedding(angle_bases) if len(angle_bases) else None
        last_angle = len(net.angle_layers) - 1
        fuse = fast and fused.enabled()
        adapted = fuse and has_adapters(self)
        plan = (fused.messages(atom_graph, d2u, bond_graph, atom_kwargs["bond_weights"],
                               bond_weights_bg, len(atom_feas), len(bond_feas))
                if fuse else None)
        for i, (atom_layer, bond_layer, angle_layer) in enumerate(zip(
            net.atom_conv_layers[1:], net.bond_conv_layers, net.angle_layers, strict=False
        )):
            if angle_feas is not None and bond_layer is not None:
                if plan is not None:
                    bond_feas = fused.bond_conv(cast(BondConv, bond_layer), atom_feas,
                                                bond_feas, angle_feas, plan)
                else:
                    bond_feas = bond_layer(atom_feas=atom_feas, bond_feas=bond_feas,
                                           bond_weights=bond_weights_bg, angle_feas=angle_feas,
                                           bond_graph=bond_graph)
                if angle_layer is not None and not (fast and i == last_angle):
                    if plan is not None:
                        angle_feas = fused.angle_update(cast(AngleUpdate, angle_layer),
                                                        atom_feas, bond_feas, angle_feas, plan)
                    else:
                        angle_feas = angle_layer(atom_feas=atom_feas, bond_feas=bond_feas,
                                                 angle_feas=angle_feas, bond_graph=bond_graph)
            if plan is not None:  # the layer's forward hook (its adapter) is applied by hand
                atom_feas = fused.atom_conv(cast(AtomConv, atom_layer), atom_feas, bond_feas, plan)
                if adapted:
                    atom_feas = self.get_submodule(f"adapters.atom_conv{i + 1}")(atom_feas)
            else:
                atom_feas = atom_layer(atom_feas=atom_feas, bond_feas=bond_feas, **atom_kwargs)
        if net.readout_norm is not None:
            atom_feas = net.readout_norm(atom_feas)
        return atom_feas, owners

    def _prefix_frozen(self) -> bool:
        """True when no gradient can reach the prefix: adapters on a frozen base, or no_grad."""
        if not has_adapters(self):
            return False
        if not torch.is_grad_enabled():
            return True
        return not any(p.requires_grad for m in prefix_modules(self.chgnet)
                       for p in m.parameters())

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
