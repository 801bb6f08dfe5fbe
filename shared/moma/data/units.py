"""The property name and unit a dataset's targets are in, as the user states them.

CIF folders and extxyz files carry no unit, and a shared JSON file's unit may be the one a
lab wants to restate. Precedence: an explicit ``--unit`` / ``--property``; else what the data
declares; else, for a module trained from ``--init``, its parent's unit (fine-tuning a
formation-energy module on more formation energies keeps eV/atom). A dataset left without a
unit gets a one-line notice, because every MAE and prediction is then a bare number.
"""

from __future__ import annotations

from dataclasses import replace

from moma.data.records import Dataset


def with_units(dataset: Dataset, *, unit: str | None = None, prop: str | None = None,
               parent_unit: str | None = None) -> tuple[Dataset, str | None]:
    """The dataset relabelled, and a notice to show (None when the unit is known)."""
    new_unit = unit if unit is not None else (dataset.unit or parent_unit or "")
    new_prop = prop if prop else dataset.target
    notice = None
    if not new_unit:
        notice = (f"{dataset.name}: no unit is known for {new_prop!r}; MAEs and predictions "
                  "will be bare numbers (pass --unit, e.g. --unit eV/atom)")
    return replace(dataset, unit=new_unit, target=new_prop), notice
