"""Units by precedence, and prediction inputs with their true values (JSON and extxyz)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write

from moma.data.predict_inputs import read_prediction_inputs
from moma.data.readers import load_dataset
from moma.data.units import with_units
from moma.paths import downstream_task_path
from tests.conftest import load_raw


def test_unit_precedence_and_notice(tmp_path: Path) -> None:
    raw = load_raw("jarvis_2d_eform")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(raw["records"][:5]))
    dataset = load_dataset(plain)
    assert dataset.unit == ""
    same, notice = with_units(dataset)
    assert same.unit == "" and notice is not None and "--unit" in notice
    inherited, notice = with_units(dataset, parent_unit="eV/atom")
    assert inherited.unit == "eV/atom" and notice is None
    told, _ = with_units(dataset, unit="meV/atom", prop="e_form", parent_unit="eV/atom")
    assert (told.unit, told.target) == ("meV/atom", "e_form")
    shared = load_dataset(downstream_task_path("jarvis_2d_eform"))
    assert with_units(shared, parent_unit="eV")[0].unit == shared.unit


def test_true_values_from_json_records_and_extxyz_frames(tmp_path: Path) -> None:
    records = load_raw("jarvis_2d_eform")["records"][:3]
    (tmp_path / "recs.json").write_text(json.dumps(records))
    frames = []
    for r in records[:2]:
        s = r["structure"]
        lattice = np.array(s["lattice"])
        atoms = Atoms(symbols=s["species"], positions=np.array(s["frac_coords"]) @ lattice,
                      cell=lattice, pbc=True)
        atoms.info["gap"] = 1.5
        frames.append(atoms)
    write(tmp_path / "frames.extxyz", frames, format="extxyz")
    inputs = read_prediction_inputs([tmp_path / "frames.extxyz", tmp_path / "recs.json"], "gap")
    assert [p.id for p in inputs][:2] == ["frames:0", "frames:1"]
    assert [p.true_value for p in inputs[:2]] == [1.5, 1.5]
    assert [p.true_value for p in inputs[2:]] == [r["target"] for r in records]
    assert len(inputs[0].structure) == len(records[0]["structure"]["species"])
