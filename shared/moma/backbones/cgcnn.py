"""CGCNN: Crystal Graph Convolutional Neural Network.

Xie & Grossman, "Crystal Graph Convolutional Neural Networks for an Accurate and Interpretable
Prediction of Material Properties", Phys. Rev. Lett. 120, 145301 (2018).

For atom ``i`` with features ``v_i`` and each of its ``M = 12`` nearest neighbours ``j`` (bond
features ``e_ij``, a Gaussian expansion of the distance), one convolution computes

    z_ij = W [v_i ; v_j ; e_ij] + b                      (fc_full, BatchNorm bn1 over all pairs)
    v_i <- softplus(v_i + BN2( sum_j sigmoid(z_ij^f) * softplus(z_ij^s) ))

where ``z^f`` and ``z^s`` are the first and second halves of ``z``. Four convolutions follow an
embedding ``Linear(92 -> 64)`` of the CGCNN atom vectors; the crystal embedding is the mean of
the atom features (64 dims) and the head is ``softplus -> Linear(64 -> 32) -> softplus ->
Linear(32 -> 1)``. Parameter names match the MoE-(18) checkpoints exactly so they load with
strict key matching.

Graphs follow the original featurization: all neighbours within 8 Å under periodic boundary
conditions, sorted by distance, the 12 nearest kept; sites with fewer are padded with index 0
and distance 9 Å (a site with none is rejected: it would see only padding).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pymatgen.core import Structure
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from moma.backbones.base import AdapterSite, Backbone, BackboneModel, Featurizer, Graph
from moma.errors import DataError
from moma.paths import moe18_dir

RADIUS = 8.0
MAX_NEIGHBOURS = 12
PAD_DISTANCE = 9.0
GAUSS_CENTRES = np.linspace(0.0, 8.0, 41)  # 0.0, 0.2, ..., 8.0
GAUSS_WIDTH = 0.2


def atom_init_path() -> Path:
    """The CGCNN atom vector table: ``$MOMA_CGCNN_ATOM_INIT`` or the MoE-(18) folder's copy."""
    env = os.environ.get("MOMA_CGCNN_ATOM_INIT")
    return Path(env) if env else moe18_dir() / "atom_init.json"


class CGCNNFeaturizer(Featurizer):
    """Structure -> CGCNN graph (atomic numbers, 12 nearest neighbour indices and distances)."""

    name = "cgcnn-graph"

    def __init__(self, atom_init: Path | None = None) -> None:
        self.atom_init_file = atom_init or atom_init_path()

    @cached_property
    def atom_table(self) -> np.ndarray:
        """``(101, 92)`` float32 table: row ``Z`` is element ``Z``'s CGCNN vector (row 0 unused)."""
        path = self.atom_init_file
        if not path.is_file():
            raise DataError(
                f"CGCNN atom table {path} not found: set MOMA_SHARED to the shared data folder "
                "or MOMA_CGCNN_ATOM_INIT to the atom_init.json of the CGCNN release"
            )
        raw = json.loads(path.read_text())
        table = np.zeros((101, 92), dtype=np.float32)
        known = np.zeros(101, dtype=bool)
        for key, vector in raw.items():
            table[int(key)] = np.asarray(vector, dtype=np.float32)
            known[int(key)] = True
        self._known = known
        return table

    def known_elements(self) -> np.ndarray:
        _ = self.atom_table
        return self._known

    @cached_property
    def atom_init_sha256(self) -> str:
        return hashlib.sha256(self.atom_init_file.read_bytes()).hexdigest()

    def config(self) -> dict[str, Any]:
        return {
            "featurizer": self.name,
            "radius": RADIUS,
            "max_neighbours": MAX_NEIGHBOURS,
            "pad_distance": PAD_DISTANCE,
            "gaussian": {"start": 0.0, "stop": 8.0, "count": 41, "width": GAUSS_WIDTH},
            "atom_init_sha256": self.atom_init_sha256,
        }

    def featurize(self, structure: Structure, record_id: str) -> Graph:
        numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
        known = self.known_elements()
        unknown = sorted({structure[i].species_string for i, z in enumerate(numbers)
                          if z >= len(known) or not known[z]})
        if unknown:
            raise DataError(
                f"record {record_id!r}: element(s) {', '.join(unknown)} have no CGCNN atom vector; "
                "remove the record (CGCNN covers Z = 1..100)"
            )
        n = len(structure)
        centres, points, _images, distances = structure.get_neighbor_list(RADIUS)
        nbr_index = np.zeros((n, MAX_NEIGHBOURS), dtype=np.int64)
        nbr_dist = np.full((n, MAX_NEIGHBOURS), PAD_DISTANCE, dtype=np.float32)
        # Sort by (centre, distance); a stable sort keeps pymatgen's order among equal distances.
        order = np.lexsort((distances, centres))
        centres, points, distances = centres[order], points[order], distances[order]
        starts = np.searchsorted(centres, np.arange(n + 1))
        for i in range(n):
            lo, hi = starts[i], min(starts[i + 1], starts[i] + MAX_NEIGHBOURS)
            if hi <= lo:
                raise DataError(
                    f"record {record_id!r}: site {i} ({structure[i].species_string}) has no "
                    f"neighbour within {RADIUS} Å; check the lattice and coordinates (units are Å) "
                    "or remove the record"
                )
            nbr_index[i, : hi - lo] = points[lo:hi]
            nbr_dist[i, : hi - lo] = distances[lo:hi]
        return {"atomic_numbers": numbers, "nbr_index": nbr_index, "nbr_dist": nbr_dist}


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


class CGCNNGraphData(Data):
    """A CGCNN graph for PyG batching: neighbour indices are offset per crystal, stacked on rows."""

    def __cat_dim__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        return 0 if key == "nbr_index" else super().__cat_dim__(key, value, *args, **kwargs)


class CGCNNBackbone(Backbone):
    """CGCNN as in the MoE-(18) modules: 92 -> 64 embedding, 4 convolutions, 64 -> 32 -> 1 head."""

    name = "cgcnn"
    version = "1"

    def __init__(self, atom_init: Path | None = None) -> None:
        self._featurizer = CGCNNFeaturizer(atom_init)

    def featurizer(self) -> CGCNNFeaturizer:
        return self._featurizer

    def collate(self, graphs: Sequence[Graph]) -> Batch:
        """One PyG ``Batch`` (the layout ``Batch.from_data_list`` of :class:`CGCNNGraphData`
        gives: neighbour indices offset per crystal, a ``batch`` vector and ``ptr``), built with
        a few NumPy concatenations: per-graph ``Data`` objects cost more than a CGCNN step."""
        sizes = np.fromiter((len(g["atomic_numbers"]) for g in graphs), dtype=np.int64,
                            count=len(graphs))
        ptr = np.zeros(len(graphs) + 1, dtype=np.int64)
        np.cumsum(sizes, out=ptr[1:])
        offsets = np.repeat(ptr[:-1], sizes)[:, None]
        batch = Batch(
            atomic_numbers=torch.from_numpy(np.concatenate([g["atomic_numbers"] for g in graphs])),
            nbr_index=torch.from_numpy(np.concatenate([g["nbr_index"] for g in graphs]) + offsets),
            nbr_dist=torch.from_numpy(np.concatenate([g["nbr_dist"] for g in graphs])),
            batch=torch.from_numpy(np.repeat(np.arange(len(graphs)), sizes)),
            ptr=torch.from_numpy(ptr),
        )
        batch._num_graphs = len(graphs)
        return batch

    def collate_reference(self, graphs: Sequence[Graph]) -> Batch:
        """The same batch through ``Batch.from_data_list`` (kept for tests)."""
        return Batch.from_data_list([
            CGCNNGraphData(
                atomic_numbers=torch.from_numpy(g["atomic_numbers"]),
                nbr_index=torch.from_numpy(g["nbr_index"]),
                nbr_dist=torch.from_numpy(g["nbr_dist"]),
                num_nodes=len(g["atomic_numbers"]),
            )
            for g in graphs
        ])

    def build(self) -> CGCNNModel:
        model = CGCNNModel()
        model.set_atom_table(self._featurizer.atom_table)
        return model
