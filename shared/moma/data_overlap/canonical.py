"""A canonical text form of a crystal structure, the same for every way of writing it down.

Two records of the same crystal differ in site order, cell choice (a supercell, another
primitive cell, a permuted or rotated lattice) and origin. The form reduces the structure to
its spglib standardized primitive cell (symprec 1e-3 Å, tight enough that distinct relaxations
stay distinct) and writes the element counts of that cell, the space group number, and the
cell's lengths (0.01 Å), angles (0.1°) and volume (0.1 Å^3). Cell parameters are sorted, so a
cell written with its axes permuted gives the same form. Where spglib finds no symmetry cell
the Niggli-reduced cell of the input is used instead (space group 0).

Rounding means two relaxations of one crystal that differ by more than ~0.005 Å are different
structures to this form: that is intended (they are different records), and it is how the
same record copied between datasets is found.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import spglib
from pymatgen.core import Lattice, Structure

CANONICAL_VERSION = "spglib-primitive/1"
SYMPREC = 1e-3


def canonical_form(structure: Structure) -> str:
    """The canonical text of ``structure`` (see the module docstring)."""
    lattice = np.asarray(structure.lattice.matrix, dtype=np.float64).tolist()
    frac = np.asarray(structure.frac_coords, dtype=np.float64).tolist()
    numbers = [site.specie.Z for site in structure]
    cell = (lattice, frac, numbers)
    spacegroup = 0
    standardized = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's error-handling notice
            standardized = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False,
                                                   symprec=SYMPREC)
            dataset = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
            spacegroup = int(dataset.number) if dataset is not None else 0
    except Exception:  # spglib raises assorted errors on odd cells
        standardized = None
    if standardized is not None and spacegroup:
        prim_lattice = Lattice(standardized[0])
        counts = Counter(int(z) for z in standardized[2])
    else:
        spacegroup = 0
        prim_lattice = structure.lattice.get_niggli_reduced_lattice()
        counts = Counter(numbers)
    lengths = sorted(round(float(x), 2) for x in prim_lattice.abc)
    angles = sorted(round(float(x), 1) for x in prim_lattice.angles)
    volume = round(float(prim_lattice.volume), 1)
    composition = ",".join(f"{z}:{counts[z]}" for z in sorted(counts))
    return (f"{composition}|sg{spacegroup}|{lengths[0]:.2f},{lengths[1]:.2f},{lengths[2]:.2f}"
            f"|{angles[0]:.1f},{angles[1]:.1f},{angles[2]:.1f}|{volume:.1f}")
