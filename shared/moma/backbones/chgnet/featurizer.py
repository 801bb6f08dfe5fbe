"""CHGNet's crystal graphs as numpy arrays, and their batches for the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import chgnet
import numpy as np
import torch
from chgnet.graph import CrystalGraph, CrystalGraphConverter
from pymatgen.core import Structure
from torch import Tensor

from moma.backbones.base import Featurizer, Graph
from moma.backbones.chgnet.checkpoint import WEIGHTS_VERSION
from moma.errors import DataError

MAX_ATOMIC_NUMBER = 94  # CHGNet's AtomEmbedding covers Z = 1..94

# Every tensor attribute of a CrystalGraph, with the dtype chgnet builds it with.
GRAPH_DTYPES: dict[str, np.dtype] = {
    "atomic_number": np.dtype(np.int32),
    "atom_frac_coord": np.dtype(np.float32),
    "atom_graph": np.dtype(np.int32),
    "neighbor_image": np.dtype(np.float32),
    "directed2undirected": np.dtype(np.int32),
    "undirected2directed": np.dtype(np.int32),
    "bond_graph": np.dtype(np.int32),
    "lattice": np.dtype(np.float32),
}


class CHGNetFeaturizer(Featurizer):
    """Structure -> CHGNet crystal graph (atom graph, bond graph, lattice) as numpy arrays."""

    name = "chgnet-crystal-graph"

    def __init__(self, atom_graph_cutoff: float, bond_graph_cutoff: float) -> None:
        self.converter = CrystalGraphConverter(
            atom_graph_cutoff=atom_graph_cutoff,
            bond_graph_cutoff=bond_graph_cutoff,
            algorithm="fast",
            on_isolated_atoms="ignore",  # checked here, to name the record and the site
        )

    @property
    def atom_graph_cutoff(self) -> float:
        return float(self.converter.atom_graph_cutoff)

    @property
    def bond_graph_cutoff(self) -> float:
        return float(self.converter.bond_graph_cutoff)

    def config(self) -> dict[str, Any]:
        return {
            "featurizer": self.name,
            "atom_graph_cutoff": self.atom_graph_cutoff,
            "bond_graph_cutoff": self.bond_graph_cutoff,
            "algorithm": self.converter.algorithm,
            "chgnet_version": chgnet.__version__,
            "weights": WEIGHTS_VERSION,
        }

    def featurize(self, structure: Structure, record_id: str) -> Graph:
        if len(structure) == 0:
            raise DataError(f"record {record_id!r}: the structure has no sites; remove it")
        if not structure.is_ordered:
            raise DataError(
                f"record {record_id!r}: the structure has partially occupied sites; CHGNet needs "
                "one element per site: order it (e.g. pymatgen OrderDisorderedStructure) or "
                "remove the record"
            )
        unknown = sorted({site.species_string for site in structure
                          if not 1 <= site.specie.Z <= MAX_ATOMIC_NUMBER})
        if unknown:
            raise DataError(
                f"record {record_id!r}: element(s) {', '.join(unknown)} are outside CHGNet's "
                f"Z = 1..{MAX_ATOMIC_NUMBER}; remove the record"
            )
        try:
            graph = self.converter(structure, graph_id=record_id)
        except (ValueError, RuntimeError) as exc:
            raise DataError(
                f"record {record_id!r}: CHGNet could not build its graph ({exc}); check the "
                "structure (overlapping atoms, units in Å) or remove the record"
            ) from exc
        bonded = np.zeros(len(structure), dtype=bool)
        bonded[graph.atom_graph.reshape(-1, 2)[:, 0].numpy()] = True
        if not bonded.all():
            site = int(np.flatnonzero(~bonded)[0])
            raise DataError(
                f"record {record_id!r}: site {site} ({structure[site].species_string}) has no "
                f"neighbour within {self.atom_graph_cutoff} Å ({int((~bonded).sum())} isolated "
                "site(s)); check the lattice and coordinates (units are Å) or remove the record"
            )
        arrays = {key: getattr(graph, key).detach().numpy().astype(dtype, copy=True)
                  for key, dtype in GRAPH_DTYPES.items()}
        arrays["bond_graph"] = arrays["bond_graph"].reshape(-1, 5)  # (0,) when no angles
        return arrays


def graph_to_crystal_graph(graph: Graph, atom_graph_cutoff: float,
                           bond_graph_cutoff: float) -> CrystalGraph:
    """Rebuild chgnet's ``CrystalGraph`` from a :data:`Graph` (positions without gradients)."""
    missing = sorted(set(GRAPH_DTYPES) - set(graph))
    if missing:
        raise DataError(
            f"CHGNet graph lacks {', '.join(missing)}: it was not made by the "
            f"{CHGNetFeaturizer.name} featurizer; rebuild the graph cache"
        )
    t = {key: torch.tensor(np.asarray(graph[key], dtype=dtype))
         for key, dtype in GRAPH_DTYPES.items()}
    return CrystalGraph(
        atomic_number=t["atomic_number"], atom_frac_coord=t["atom_frac_coord"],
        atom_graph=t["atom_graph"].reshape(-1, 2), atom_graph_cutoff=atom_graph_cutoff,
        neighbor_image=t["neighbor_image"].reshape(-1, 3),
        directed2undirected=t["directed2undirected"],
        undirected2directed=t["undirected2directed"], bond_graph=t["bond_graph"],
        bond_graph_cutoff=bond_graph_cutoff, lattice=t["lattice"],
    )


@dataclass
class CHGNetBatch:
    """A batch of ``CrystalGraph`` s; the model turns it into chgnet's ``BatchedGraph``."""

    graphs: list[CrystalGraph]

    @property
    def num_graphs(self) -> int:
        return len(self.graphs)

    @property
    def n_atoms(self) -> Tensor:
        """Atoms per crystal, shape ``(num_graphs,)``."""
        return torch.tensor([len(g.atomic_number) for g in self.graphs])

    def to(self, device: torch.device | str) -> CHGNetBatch:
        return CHGNetBatch([g.to(str(device)) for g in self.graphs])
