"""load_dataset on the real shared files, and the same records through every other format."""

from __future__ import annotations

import csv
import gzip
import json
import time
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter

from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.errors import DataError
from moma.paths import downstream_task_path, shared_dir

TASKS = {
    "expt_eform": 1709,
    "jarvis_2d_dielectric_opt": 522,
    "jarvis_2d_dielectric_tbmbj": 120,
    "jarvis_2d_eform": 633,
    "jarvis_2d_exfoliation": 636,
    "jarvis_2d_gap_tbmbj": 120,
    "mp_elastic_anisotropy": 1181,
    "mp_eps_electronic": 1296,
    "mp_poisson_ratio": 1181,
    "mp_poly_electronic": 1056,
    "mp_poly_total": 1056,
}
CASTELLI = shared_dir() / "data" / "hub" / "castelli_perovskites.json.gz"


def raw_file(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


@pytest.mark.parametrize("task", sorted(TASKS))
def test_downstream_file_loads_with_published_splits(task: str) -> None:
    path = downstream_task_path(task)
    raw = raw_file(path)
    dataset = load_dataset(path)
    assert raw["n"] == TASKS[task] == len(dataset) == dataset.report.n_read
    assert dataset.report.rejected == []
    assert (dataset.name, dataset.target, dataset.unit) == (task, raw["target"], raw["unit"])
    assert sorted(dataset.splits) == [f"seed{i}" for i in range(5)]
    for name, parts in dataset.splits.items():
        assert parts == raw["splits"][name]  # published splits kept exactly
        every = parts["train"] + parts["val"] + parts["test"]
        assert len(every) == len(set(every)), "a record in two parts"
        assert all(0 <= i < len(dataset) for i in every)
        # 70/15/15 of the records in the split (a few records are in none)
        assert abs(len(parts["train"]) / len(every) - 0.70) < 0.01
        assert abs(len(parts["test"]) / len(every) - 0.15) < 0.01
    first, last = raw["records"][0], raw["records"][-1]
    assert dataset.records[0].id == first["id"]
    assert dataset.records[0].target == first["target"]
    assert dataset.records[-1].target == last["target"]
    structure = dataset.records[-1].structure
    assert [s.species_string for s in structure] == last["structure"]["species"]
    np.testing.assert_allclose(structure.lattice.matrix, last["structure"]["lattice"], atol=1e-12)
    np.testing.assert_allclose(structure.frac_coords, last["structure"]["frac_coords"], atol=1e-12)


def test_largest_downstream_file_loads_fast() -> None:
    start = time.perf_counter()
    dataset = load_dataset(downstream_task_path("expt_eform"))
    seconds = time.perf_counter() - start
    print(f"expt_eform: {len(dataset)} records in {seconds:.3f} s")
    assert len(dataset) == 1709
    assert seconds < 3.0


def test_expt_eform_keeps_repeated_measurements_of_one_crystal() -> None:
    # 33 ids occur more than once, each time with the same structure and its own measurement;
    # the published splits address them by position, so they all stay.
    dataset = load_dataset(downstream_task_path("expt_eform"))
    ids = dataset.ids
    repeated = {i for i in ids if ids.count(i) > 1}
    assert len(repeated) == 33
    positions = [k for k, i in enumerate(ids) if i == "mp-1487"]
    assert positions == [18, 217, 544]
    targets = [dataset.records[k].target for k in positions]
    assert targets == [-0.6405, -0.6042, -0.6871]


def test_castelli_full_file() -> None:
    dataset = load_dataset(CASTELLI, target="e_form")
    assert len(dataset) == 7572 == raw_file(CASTELLI)["n"] == dataset.report.n_read
    assert dataset.name == "castelli_perovskites:e_form"
    assert (dataset.target, dataset.unit) == ("e_form", "heat of formation, eV (CMR heat_all)")
    assert dataset.splits == {}
    assert dataset.records[0].id == "castelli-1"
    assert dataset.records[0].target == 1.2
    assert all(len(r.structure) == 5 for r in dataset.records)


@pytest.mark.parametrize("target", ["e_form", "dir_gap", "ind_gap"])
def test_castelli_target_picks_one_property(tmp_path: Path, target: str) -> None:
    raw = raw_file(CASTELLI)
    raw["records"] = raw["records"][:300]  # the same layout, fewer records
    path = tmp_path / "castelli_perovskites.json"
    path.write_text(json.dumps(raw))
    dataset = load_dataset(path, target=target)
    assert dataset.name == f"castelli_perovskites:{target}"
    assert dataset.unit == raw["targets"][target]
    assert [r.target for r in dataset.records] == [r[target] for r in raw["records"]]


def test_castelli_without_target_lists_the_choices() -> None:
    with pytest.raises(DataError, match=r"several targets \(e_form, dir_gap, ind_gap\).*--target"):
        load_dataset(CASTELLI)
    with pytest.raises(DataError, match="no target 'gap'; pick one of e_form, dir_gap, ind_gap"):
        load_dataset(CASTELLI, target="gap")


def test_task_overrides_the_name_and_a_foreign_target_is_refused() -> None:
    path = downstream_task_path("jarvis_2d_gap_tbmbj")
    assert load_dataset(path, task="my_gap").name == "my_gap"
    assert load_dataset(path, target="gap tbmbj").target == "gap tbmbj"
    with pytest.raises(DataError, match="holds one target, 'gap tbmbj', not 'e_form'"):
        load_dataset(path, target="e_form")


# -- the same real records through formats 2, 3 and 4 ---------------------------------------


@pytest.fixture(scope="module")
def reference() -> Dataset:
    """40 real records (2D materials: layered cells with vacuum, 2 to 20 atoms)."""
    full = load_dataset(downstream_task_path("jarvis_2d_exfoliation"))
    return full.subset(list(range(0, 400, 10)))


def assert_same_structures(got: Dataset, want: Dataset, *, same_frame: bool = True) -> None:
    assert got.ids == want.ids
    assert [r.target for r in got.records] == [r.target for r in want.records]
    for a, b in zip(got.records, want.records, strict=True):
        assert len(a.structure) == len(b.structure)
        if same_frame:
            np.testing.assert_allclose(a.structure.lattice.matrix, b.structure.lattice.matrix,
                                       atol=1e-6)
            delta = a.structure.frac_coords - b.structure.frac_coords
            np.testing.assert_allclose(delta, 0.0, atol=1e-6)
            assert [s.species_string for s in a.structure] == [
                s.species_string for s in b.structure
            ]


def test_pymatgen_dict_json_round_trip(tmp_path: Path, reference: Dataset) -> None:
    rows = [{"id": r.id, "target": r.target, "structure": r.structure.as_dict()}
            for r in reference.records]
    plain = tmp_path / "mine.json"
    plain.write_text(json.dumps(rows))
    packed = tmp_path / "packed.json.gz"
    packed.write_bytes(gzip.compress(json.dumps({"records": rows}).encode()))
    for path, name in ((plain, "mine"), (packed, "packed")):
        dataset = load_dataset(path)
        assert (dataset.name, dataset.target, dataset.splits) == (name, "target", {})
        assert dataset.report.n_read == 40
        assert_same_structures(dataset, reference)


def test_cgcnn_folder_round_trip(tmp_path: Path, reference: Dataset) -> None:
    with (tmp_path / "id_prop.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        for record in reference.records:
            writer.writerow([record.id, repr(record.target)])
            CifWriter(record.structure).write_file(tmp_path / f"{record.id}.cif")
    dataset = load_dataset(tmp_path, task="exfo")
    assert dataset.name == "exfo"
    assert dataset.report.n_read == 40
    assert_same_structures(dataset, reference, same_frame=False)
    snapped = 0
    for got, want in zip(dataset.records, reference.records, strict=True):
        # a CIF stores cell parameters, so the orientation may differ: compare a, b, c, angles
        np.testing.assert_allclose(got.structure.lattice.parameters,
                                   want.structure.lattice.parameters, atol=1e-6)
        snapped += _match_sites(got.structure, want.structure)
    print(f"CIF round trip: {snapped} coordinates snapped to 1/3 or 2/3 by pymatgen's parser")


def _match_sites(got: Structure, want: Structure) -> int:
    """Pair the sites (a CIF parser groups them by species); returns how many coordinates
    differ by more than 1e-6, each of which must be one the parser rounds to 1/3 or 2/3."""
    snapped = 0
    for site in want:
        candidates = [s for s in got if s.species_string == site.species_string]
        deltas = [s.frac_coords - site.frac_coords for s in candidates]
        deltas = [d - np.round(d) for d in deltas]
        best = min(deltas, key=lambda d: float(np.abs(d).max()))
        assert np.abs(best).max() < 1e-4
        for value, delta in zip(site.frac_coords, best, strict=True):
            if abs(delta) > 1e-6:
                near = min(abs(value % 1 - 1 / 3), abs(value % 1 - 2 / 3))
                assert near < 1e-4, (value, delta)
                snapped += 1
    return snapped


def test_extxyz_round_trip(tmp_path: Path, reference: Dataset) -> None:
    frames = []
    for record in reference.records:
        atoms = AseAtomsAdaptor.get_atoms(record.structure)
        atoms.info["id"] = record.id
        atoms.info["exfoliation_en"] = record.target
        frames.append(atoms)
    path = tmp_path / "layers.extxyz"
    ase.io.write(path, frames, format="extxyz")
    dataset = load_dataset(path, target="exfoliation_en")
    assert (dataset.name, dataset.target) == ("layers", "exfoliation_en")
    assert_same_structures(dataset, reference)


def test_extxyz_ids_default_to_frame_index_and_energy_targets_are_found(
    tmp_path: Path, reference: Dataset
) -> None:
    frames = []
    for record in reference.records[:3]:
        atoms = AseAtomsAdaptor.get_atoms(record.structure)
        atoms.info["energy"] = record.target  # ASE moves this to a calculator on reading
        frames.append(atoms)
    path = tmp_path / "plain.xyz"
    ase.io.write(path, frames, format="extxyz")
    dataset = load_dataset(path, target="energy")
    assert dataset.ids == ["0", "1", "2"]
    assert [r.target for r in dataset.records] == [r.target for r in reference.records[:3]]


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,1\n")
    with pytest.raises(DataError, match=r"data.csv: unknown dataset format; pass a shared-format"):
        load_dataset(path)
