"""CGCNN's graphs: the 12 nearest neighbours within 8 Å of every site, and the atom vector table."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from moma.backbones.base import Featurizer, Graph
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
