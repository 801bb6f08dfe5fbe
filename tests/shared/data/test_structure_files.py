"""read_structures: prediction inputs from CIF, POSCAR/CONTCAR/.vasp and JSON files."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.data.structure_files import read_structures
from moma.errors import DataError
from moma.paths import downstream_task_path


@pytest.fixture(scope="module")
def real() -> Dataset:
    return load_dataset(downstream_task_path("jarvis_2d_gap_tbmbj"))


def same(a: Structure, b: Structure, atol: float = 1e-6) -> None:
    assert [s.species_string for s in a] == [s.species_string for s in b]
    np.testing.assert_allclose(a.lattice.matrix, b.lattice.matrix, atol=atol)
    delta = a.frac_coords - b.frac_coords
    np.testing.assert_allclose(delta - np.round(delta), 0.0, atol=atol)


def test_every_format_reads_with_file_stem_ids(tmp_path: Path, real: Dataset) -> None:
    s0, s1, s2, s3 = (real.records[i].structure for i in range(4))
    CifWriter(s0).write_file(tmp_path / "first.cif")
    Poscar(s1).write_file(tmp_path / "POSCAR")
    Poscar(s2).write_file(tmp_path / "relaxed.vasp")
    (tmp_path / "plain.json").write_text(json.dumps(s3.as_dict()))
    got = read_structures([tmp_path / "first.cif", tmp_path / "POSCAR",
                           str(tmp_path / "relaxed.vasp"), tmp_path / "plain.json"])
    assert [i for i, _ in got] == ["first", "POSCAR", "relaxed", "plain"]
    assert got[0][1].composition == s0.composition
    np.testing.assert_allclose(got[0][1].lattice.parameters, s0.lattice.parameters, atol=1e-6)
    same(got[1][1], s1)
    same(got[2][1], s2)
    same(got[3][1], s3)


def test_dataset_file_gives_every_record(tmp_path: Path, real: Dataset) -> None:
    path = tmp_path / "batch.json.gz"
    shutil.copy(downstream_task_path("jarvis_2d_gap_tbmbj"), path)
    got = read_structures([path])
    assert len(got) == 120
    assert [i for i, _ in got] == [f"batch:{r.id}" for r in real.records]
    same(got[17][1], real.records[17].structure, atol=1e-12)
    records = [{"id": r.id, "structure": r.structure.as_dict()} for r in real.records[:3]]
    (tmp_path / "mine.json").write_text(json.dumps(records))  # no targets needed to predict
    assert [i for i, _ in read_structures([tmp_path / "mine.json"])] == [
        f"mine:{r.id}" for r in real.records[:3]
    ]


def test_folder_stands_for_its_structure_files(tmp_path: Path, real: Dataset) -> None:
    for name, record in zip(("b.cif", "a.cif"), real.records, strict=False):
        CifWriter(record.structure).write_file(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a structure")
    assert [i for i, _ in read_structures([tmp_path])] == ["a", "b"]


def test_errors_name_the_file_and_the_fix(tmp_path: Path, real: Dataset) -> None:
    with pytest.raises(DataError, match="no structure files given"):
        read_structures([])
    missing = tmp_path / "gone.cif"
    with pytest.raises(DataError, match=f"^{missing}: no such file; check the path$"):
        read_structures([missing])
    (tmp_path / "x.pdb").write_text("ATOM")
    with pytest.raises(DataError, match=r"x.pdb: unknown structure file type; use CIF \(.cif\)"):
        read_structures([tmp_path / "x.pdb"])
    (tmp_path / "empty.cif").write_text("")
    with pytest.raises(DataError, match=r"empty\.cif: the file is empty"):
        read_structures([tmp_path / "empty.cif"])
    (tmp_path / "junk.cif").write_text("data_x\n_cell_length_a 3\n")
    with pytest.raises(DataError, match=r"junk.cif: unparseable CIF junk.cif: .*; fix the file"):
        read_structures([tmp_path / "junk.cif"])

    sub = tmp_path / "other"
    sub.mkdir()
    CifWriter(real.records[0].structure).write_file(tmp_path / "same.cif")
    CifWriter(real.records[1].structure).write_file(sub / "same.cif")
    with pytest.raises(DataError, match=r"id 'same' is also the id of a structure in .*rename one"):
        read_structures([tmp_path / "same.cif", sub / "same.cif"])

    bad = [{"id": "ok", "structure": real.records[0].structure.as_dict()},
           {"id": "bad", "structure": {"lattice": [[1, 0, 0]], "species": ["Na"],
                                       "frac_coords": [[0, 0, 0]]}}]
    (tmp_path / "two.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"two.json: record 'bad': lattice has shape 1x3, expected "
                                        r"3x3; fix or remove that record"):
        read_structures([tmp_path / "two.json"])


def test_poscar_problems(tmp_path: Path, real: Dataset) -> None:
    structure = real.records[0].structure
    text = Poscar(structure).get_str()
    lines = text.splitlines()
    # VASP 4: no element line, and no symbols after the coordinates
    coords = [" ".join(line.split()[:3]) for line in lines[8:]]
    vasp4 = "\n".join(["no names", *lines[1:5], *lines[6:8], *coords]) + "\n"
    (tmp_path / "CONTCAR").write_text(vasp4)
    with pytest.raises(DataError, match="CONTCAR: CONTCAR names no elements; add the element line"):
        read_structures([tmp_path / "CONTCAR"])
    symbols = lines[5].split()
    lines[5] = " ".join(["Xx", *symbols[1:]])
    (tmp_path / "POSCAR_bad").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"POSCAR_bad: .*Xx"):
        read_structures([tmp_path / "POSCAR_bad"])


@pytest.mark.filterwarnings("ignore:No Pauling electronegativity")
def test_disordered_and_heavy_structures_are_refused(tmp_path: Path) -> None:
    alloy = Structure([[3, 0, 0], [0, 3, 0], [0, 0, 3]], [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    (tmp_path / "alloy.json").write_text(json.dumps(alloy.as_dict()))
    disordered = r"alloy.json: site 0 is disordered \(Fe0.5 Co0.5\); .*order the structure first"
    with pytest.raises(DataError, match=disordered + "; fix the file"):
        read_structures([tmp_path / "alloy.json"])
    heavy = Structure([[3, 0, 0], [0, 3, 0], [0, 0, 3]], ["Rf"], [[0, 0, 0]])
    CifWriter(heavy).write_file(tmp_path / "heavy.cif")
    with pytest.raises(DataError, match=r"heavy.cif: element Rf \(Z=104\) is beyond Z=100"):
        read_structures([tmp_path / "heavy.cif"])
    gz = tmp_path / "single.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(heavy.as_dict()).encode()))
    with pytest.raises(DataError, match=r"single\.json\.gz"):
        read_structures([gz])
