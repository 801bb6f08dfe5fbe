"""CGCNN as a MoMa backbone: the featurizer, batching of its graphs, and the model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from moma.backbones.base import Backbone, Graph
from moma.backbones.cgcnn.featurizer import CGCNNFeaturizer
from moma.backbones.cgcnn.model import CGCNNModel


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
