"""CHGNet's interaction layers with the first linear layer moved in front of the gather.

Every CHGNet convolution (chgnet 0.4.2 ``AtomConv``, ``BondConv``, ``AngleUpdate``) builds one
message per directed bond or per angle by gathering and concatenating the features of the atoms
and bonds it joins, and sends the concatenation through a gated MLP whose first layer is linear:

    W [a_i; b_ij; a_j] + c = (W_1 a_i) + (W_2 b_ij) + (W_3 a_j) + c

so the first layer can be applied to each atom, bond or angle *once* and the products gathered
and summed, instead of multiplying one 192- or 256-wide row per directed bond (about 47 per atom
on ``mp_eps_electronic``) or per angle (about 33 per atom). The core and gate MLPs share their
input, so their first layers run as one matrix product. Profiled on ``mp_eps_electronic``
(batches of 32, one thread) those first layers and the concatenations were about 40 % of a
training step; here they become products over atoms and bonds and one gather-add per message.

The sum is the same quantity in another order, so the results agree with chgnet's layers to
float32 rounding (``tests/shared/backbones/test_chgnet_fused.py`` compares them, gradients
included). Only what the layers compute is reproduced: their modules and weights are chgnet's
own, read here, so a state dict is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from chgnet.model.functions import GatedMLP
from chgnet.model.layers import AngleUpdate, AtomConv, BondConv
from torch import Tensor, nn

_ENABLED = [True]


def enabled() -> bool:
    """Whether the fast path uses these layers (on with it; off only to measure them)."""
    return _ENABLED[0]


def set_enabled(value: bool) -> None:
    _ENABLED[0] = value


def _split_mlp(mlp: nn.Module) -> tuple[nn.Linear, list[nn.Module]]:
    """The first linear layer of a chgnet ``MLP`` and the layers after it.

    Layers before it must be identities (a dropout of 0, or any dropout out of training), else
    moving the linear layer would change the computation.
    """
    layers = list(mlp.get_submodule("layers").children())
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            return layer, layers[i + 1:]
        if not (isinstance(layer, nn.Dropout) and (layer.p == 0 or not layer.training)):
            raise ValueError(f"unexpected layer {layer!r} before the first linear layer")
    raise ValueError("the MLP has no linear layer")


def _run(layers: Sequence[nn.Module], x: Tensor) -> Tensor:
    for layer in layers:
        if not (isinstance(layer, nn.Dropout) and layer.p == 0):
            x = layer(x)
    return x


class FusedFirst:
    """The core and gate first layers of a ``GatedMLP`` as one (2 out, in) weight."""

    def __init__(self, gated: GatedMLP) -> None:
        core, self.core_rest = _split_mlp(gated.mlp_core)
        gate, self.gate_rest = _split_mlp(gated.mlp_gate)
        self.out = core.out_features
        self.weight = torch.cat([core.weight, gate.weight])
        self.bias = (torch.cat([core.bias, gate.bias])
                     if core.bias is not None and gate.bias is not None else None)
        self.gated = gated

    def part(self, x: Tensor, start: int, *, bias: bool = False) -> Tensor:
        """``x`` times the columns ``start:start + width`` of the first layers (plus bias)."""
        w = self.weight[:, start:start + x.shape[1]]
        if bias and self.bias is not None:
            return torch.addmm(self.bias, x, w.t())
        return x @ w.t()

    def finish(self, hidden: Tensor) -> Tensor:
        """The rest of the gated MLP from the summed first-layer output."""
        g = self.gated
        core_in, gate_in = hidden.split(self.out, dim=1)  # backward: one cat, no zero fill
        core = _run(self.core_rest, core_in)
        gate = _run(self.gate_rest, gate_in)
        if g.bn1 is not None and g.bn2 is not None:  # chgnet's norm="layer"
            core, gate = g.bn1(core), g.bn2(gate)
        return g.activation(core) * g.sigmoid(gate)


@dataclass
class Messages:
    """Index plans and frozen bond weights shared by every layer of one forward pass.

    ``atom_rows`` picks, for each directed bond, rows of ``[center; neighbour; bond]`` products
    stacked in one table; ``angle_rows`` does the same for each angle and ``[bond_i; bond_j;
    center]``; one ``embedding_bag`` sum replaces three gathers and two additions.
    """

    atom_rows: Tensor  # (directed bonds, 3)
    atom_local: Tensor  # (directed bonds, 3): the same rows, each into its own table
    centers: Tensor  # (directed bonds,): the atom each message is summed on
    atom_weights: Tensor  # (directed bonds, bond dim): bond weights of each directed bond
    angle_rows: Tensor  # (angles, 3)
    angle_local: Tensor
    first_bonds: Tensor  # (angles,): the bond each angle message is summed on
    angle_weights: Tensor  # (angles, bond dim): product of the two bonds' weights


def messages(atom_graph: Tensor, directed2undirected: Tensor, bond_graph: Tensor,
             bond_weights_ag: Tensor, bond_weights_bg: Tensor, n_atoms: int,
             n_bonds: int) -> Messages:
    """The plan of one batch (indices as ``BatchedGraph`` gives them)."""
    atom_graph = atom_graph.long()
    d2u = directed2undirected.long()
    atom_local = torch.stack([atom_graph[:, 0], atom_graph[:, 1], d2u], dim=1)
    atom_rows = atom_local + atom_local.new_tensor([0, n_atoms, 2 * n_atoms])
    if bond_graph.numel():
        bg = bond_graph.long()
        angle_local = torch.stack([bg[:, 1], bg[:, 2], bg[:, 0]], dim=1)
        first = bg[:, 1]
        angle_weights = (bond_weights_bg.index_select(0, bg[:, 1])
                         * bond_weights_bg.index_select(0, bg[:, 2]))
    else:
        angle_local = atom_local[:0]
        first = atom_graph[:0, 0]
        angle_weights = bond_weights_bg[:0]
    angle_rows = angle_local + angle_local.new_tensor([0, n_bonds, 2 * n_bonds])
    return Messages(atom_rows, atom_local, atom_graph[:, 0], bond_weights_ag.index_select(0, d2u),
                    angle_rows, angle_local, first, angle_weights)


class _GatherSum(torch.autograd.Function):
    """Row ``r``: ``sum_k tables[k][local[r, k]]``; ``rows`` are the same indices into the
    stacked tables. Forward is one ``embedding_bag``; backward one ``index_add`` per table
    (``embedding_bag``'s own backward sorts the indices on every call and was 3x slower)."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, local: Tensor, *tables: Tensor) -> Tensor:
        ctx.save_for_backward(local)
        ctx.sizes = [len(t) for t in tables]
        return nn.functional.embedding_bag(rows, torch.cat(tables), mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (local,) = ctx.saved_tensors
        grad = grad.contiguous()
        grads: list[Tensor | None] = [None, None]
        for k, size in enumerate(ctx.sizes):
            grads.append(grad.new_zeros((size, grad.shape[1])).index_add_(0, local[:, k], grad)
                         if ctx.needs_input_grad[2 + k] else None)
        return tuple(grads)


def _bag(tables: Sequence[Tensor], rows: Tensor, local: Tensor) -> Tensor:
    """Row ``r`` of the result: the sum of ``tables[k][local[r, k]]``."""
    out: Tensor = _GatherSum.apply(rows, local, *tables)
    return out


def atom_conv(layer: AtomConv, atom_feas: Tensor, bond_feas: Tensor, plan: Messages) -> Tensor:
    """``AtomConv.forward`` (messages ``[center, bond, neighbour]`` per directed bond)."""
    f = FusedFirst(layer.twoBody_atom)
    d = atom_feas.shape[1]
    hidden = _bag([f.part(atom_feas, 0), f.part(atom_feas, d + bond_feas.shape[1]),
                   f.part(bond_feas, d, bias=True)], plan.atom_rows, plan.atom_local)
    update = f.finish(hidden) * plan.atom_weights
    new = atom_feas.new_zeros(atom_feas.shape).index_add_(0, plan.centers, update)
    if layer.use_mlp_out:
        new = layer.mlp_out(new)
    if layer.resnet:
        new = new + atom_feas
    return layer.atom_norm(new) if layer.atom_norm is not None else new


def _angle_hidden(f: FusedFirst, atom_feas: Tensor, bond_feas: Tensor, angle_feas: Tensor,
                  plan: Messages) -> Tensor:
    """First-layer output per angle for inputs ``[bond_i, bond_j, angle, center]``."""
    b = bond_feas.shape[1]
    a = angle_feas.shape[1]
    gathered = _bag([f.part(bond_feas, 0, bias=True), f.part(bond_feas, b),
                     f.part(atom_feas, 2 * b + a)], plan.angle_rows, plan.angle_local)
    return torch.addmm(gathered, angle_feas, f.weight[:, 2 * b:2 * b + a].t())


def bond_conv(layer: BondConv, atom_feas: Tensor, bond_feas: Tensor, angle_feas: Tensor,
              plan: Messages) -> Tensor:
    """``BondConv.forward``: one message per angle, summed on its first bond."""
    f = FusedFirst(layer.twoBody_bond)
    update = f.finish(_angle_hidden(f, atom_feas, bond_feas, angle_feas, plan))
    update = update * plan.angle_weights
    new = bond_feas.new_zeros(bond_feas.shape).index_add_(0, plan.first_bonds, update)
    if layer.use_mlp_out:
        new = layer.mlp_out(new)
    if layer.resnet:
        new = new + bond_feas
    return layer.bond_norm(new) if layer.bond_norm is not None else new


def angle_update(layer: AngleUpdate, atom_feas: Tensor, bond_feas: Tensor, angle_feas: Tensor,
                 plan: Messages) -> Tensor:
    """``AngleUpdate.forward``."""
    f = FusedFirst(layer.twoBody_bond)
    new = f.finish(_angle_hidden(f, atom_feas, bond_feas, angle_feas, plan))
    if layer.resnet:
        new = new + angle_feas
    return layer.angle_norm(new) if layer.angle_norm is not None else new
