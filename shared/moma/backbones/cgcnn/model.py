"""The CGCNN network: Gaussian bond features, gated convolutions, mean pooling, scalar head."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

from moma.backbones.base import AdapterSite, BackboneModel
from moma.backbones.cgcnn.featurizer import GAUSS_CENTRES, GAUSS_WIDTH


def gaussian_expand(distances: Tensor) -> Tensor:
    """``exp(-(d - c)^2 / 0.2^2)`` on the 41 centres, shape ``(..., 41)``."""
    centres = torch.as_tensor(GAUSS_CENTRES, dtype=distances.dtype, device=distances.device)
    return torch.exp(-((distances.unsqueeze(-1) - centres) ** 2) / GAUSS_WIDTH**2)


class ConvLayer(nn.Module):
    """One CGCNN convolution (gated neighbour sum with two BatchNorms); see the module docstring."""

    def __init__(self, atom_fea_len: int = 64, nbr_fea_len: int = 41) -> None:
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def forward(self, atom_fea: Tensor, nbr_fea: Tensor, nbr_index: Tensor) -> Tensor:
        n, m = nbr_index.shape
        # fc_full(concat(v_i, v_j, e_ij)) computed as W_i v_i + (W_j v)[j] + W_e e_ij + b: the
        # same linear map, but the two atom terms are multiplied once per atom instead of once
        # per (atom, neighbour) pair, which is most of CGCNN's arithmetic.
        f = self.atom_fea_len
        weight = self.fc_full.weight
        self_term = nn.functional.linear(atom_fea, weight[:, :f], self.fc_full.bias)
        # index_select (backward: index_add) keeps training bit-for-bit repeatable on CPU.
        nbr_term = torch.index_select(nn.functional.linear(atom_fea, weight[:, f : 2 * f]), 0,
                                      nbr_index.reshape(-1)).view(n, m, 2 * f)
        edge_term = nn.functional.linear(nbr_fea, weight[:, 2 * f :])
        total = self_term.unsqueeze(1) + nbr_term + edge_term
        gated = self.bn1(total.view(-1, 2 * f)).view(n, m, -1)
        gate, core = gated.chunk(2, dim=2)
        summed = self.bn2((torch.sigmoid(gate) * F.softplus(core)).sum(dim=1))
        return F.softplus(atom_fea + summed)


class CGCNNModel(BackboneModel):
    """The CGCNN network with its scalar head (``conv_to_fc``, ``fc_out``)."""

    head_prefixes: ClassVar[tuple[str, ...]] = ("conv_to_fc.", "fc_out.")
    atom_table: Tensor

    def __init__(self, orig_atom_fea_len: int = 92, atom_fea_len: int = 64,
                 nbr_fea_len: int = 41, n_conv: int = 4, h_fea_len: int = 32) -> None:
        super().__init__()
        self.embedding_dim = atom_fea_len
        self.embedding = nn.Linear(orig_atom_fea_len, atom_fea_len)
        self.convs = nn.ModuleList([ConvLayer(atom_fea_len, nbr_fea_len) for _ in range(n_conv)])
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        self.fc_out = nn.Linear(h_fea_len, 1)
        self.register_buffer("atom_table", torch.zeros(101, orig_atom_fea_len), persistent=False)

    def set_atom_table(self, table: np.ndarray) -> None:
        self.atom_table = torch.as_tensor(table, dtype=torch.float32,
                                          device=self.atom_table.device)

    def embed(self, batch: Any) -> Tensor:
        atom_fea = self.embedding(self.atom_table[batch.atomic_numbers])
        nbr_fea = gaussian_expand(batch.nbr_dist)
        for conv in self.convs:
            atom_fea = conv(atom_fea, nbr_fea, batch.nbr_index)
        return scatter(atom_fea, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean")

    def predict_from_embedding(self, embedding: Tensor) -> Tensor:
        hidden = F.softplus(self.conv_to_fc(F.softplus(embedding)))
        return self.fc_out(hidden).squeeze(-1)

    def reset_head(self, generator: torch.Generator | None = None) -> None:
        for layer in (self.conv_to_fc, self.fc_out):
            layer.reset_parameters()

    def adapter_sites(self) -> list[AdapterSite]:
        return [AdapterSite(f"conv{i}", f"convs.{i}", self.embedding_dim)
                for i in range(len(self.convs))]
