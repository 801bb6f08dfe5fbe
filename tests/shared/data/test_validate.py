"""Bad input, one case at a time: each error names the file or record, the problem and the fix."""

from __future__ import annotations

import copy
import gzip
import json
import math
import re
from pathlib import Path
from typing import Any

import ase
import ase.io
import numpy as np
import pytest

from moma.data.readers import load_dataset
from moma.data.validate import RecordProblem, check_splits, parse_target, structure_from_arrays
from moma.errors import DataError, ExitCode
from moma.paths import downstream_task_path

FIX = "Fix or remove them, or pass --skip-invalid to use the"


@pytest.fixture(scope="module")
def gap_file() -> dict[str, Any]:
    """The real 120-record jarvis_2d_gap_tbmbj file, with its five published splits."""
    with gzip.open(downstream_task_path("jarvis_2d_gap_tbmbj"), "rt") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def write(tmp_path: Path, data: object, name: str = "data.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))  # NaN and Infinity are written as JSON extensions
    return path


def broken(gap_file: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(gap_file)
    record = data["records"][index]
    for key, value in changes.items():
        if key in ("lattice", "species", "frac_coords"):
            record["structure"][key] = value
        else:
            record[key] = value
    return data


def error_of(path: Path, **kwargs: Any) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(path, **kwargs)
    assert info.value.exit_code == ExitCode.BAD_DATA
    message = str(info.value)
    assert "\n" not in message
    return message


# -- file level -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nothing.json")
    assert message == f"{tmp_path / 'nothing.json'}: no such file or folder; check the path"


def test_empty_files(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("")
    assert "empty.json: the file is empty" in error_of(tmp_path / "empty.json")
    (tmp_path / "blank.json.gz").write_bytes(gzip.compress(b"  \n"))
    assert "blank.json.gz: the file is empty" in error_of(tmp_path / "blank.json.gz")
    assert "no records" in error_of(write(tmp_path, {"records": []}))
    assert "no records" in error_of(write(tmp_path, [], "list.json"))
    folder = tmp_path / "cifs"
    folder.mkdir()
    assert f"{folder}: no id_prop.csv" in error_of(folder)
    (folder / "id_prop.csv").write_text("\n\n")
    assert "id_prop.csv: the file is empty; write one 'id,target' line" in error_of(folder)


def test_unreadable_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"records": [')
    assert "bad.json: not valid JSON" in error_of(path)
    gz = tmp_path / "bad.json.gz"
    gz.write_bytes(b"not gzip at all")
    assert "bad.json.gz: cannot read it" in error_of(gz)


@pytest.mark.parametrize(
    ("split", "pattern"),
    [
        (
            {"train": [0, 120], "val": [1], "test": [2]},
            r"split seed0/train index 120 is out of range \(the file has 120 records",
        ),
        ({"train": [0], "val": [-1], "test": [2]}, "split seed0/val index -1 is out of range"),
        ({"train": [0, 5], "val": [1], "test": [5]}, "index 5 is listed in both train and test"),
        ({"train": [0], "val": [1.0], "test": [2]}, "split seed0/val entry 1.0 is not an integer"),
        ({"train": [0], "test": [2]}, "split 'seed0' has no 'val' list"),
    ],
)
def test_bad_split_is_an_error_even_when_skipping(
    tmp_path: Path, gap_file: dict[str, Any], split: dict[str, Any], pattern: str
) -> None:
    data = copy.deepcopy(gap_file)
    data["splits"]["seed0"] = split
    path = write(tmp_path, data)
    for skip in (False, True):
        message = error_of(path, skip_invalid=skip)
        assert message.startswith(f"{path}: ")
        assert re.search(pattern, message), message
        assert "fix the split or remove 'splits'" in message


# -- record level ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"lattice": [[1.0, 0.0], [0.0, 1.0]]}, "lattice has shape 2x2, expected 3x3"),
        ({"frac_coords": [[0.0, 0.0, 0.0]]}, "species but 1 frac_coords"),
        ({"lattice": [[1, 0, 0], [0, "a", 0], [0, 0, 1]]}, "lattice is not numeric"),
        ({"frac_coords": [0.1, 0.2, 0.3]}, "frac_coords has shape 3, expected n x 3"),
        ({"frac_coords": "none"}, "frac_coords is not numeric"),
        ({"lattice": [[1, 0, 0], [2, 0, 0], [0, 0, 5]]}, "singular lattice"),
        ({"lattice": [[0, 0, 0], [0, 4, 0], [0, 0, 5]]}, "singular lattice"),
        ({"target": float("nan")}, "target is NaN"),
        ({"target": float("inf")}, "target is +inf"),
        ({"target": "high"}, "target 'high' is not a number"),
        ({"target": None}, "no 'target' value"),
        ({"species": None}, "species must be a non-empty list"),
    ],
)
def test_invalid_record_names_record_reason_and_fix(
    tmp_path: Path, gap_file: dict[str, Any], changes: dict[str, Any], reason: str
) -> None:
    path = write(tmp_path, broken(gap_file, 7, **changes))
    record_id = gap_file["records"][7]["id"]
    message = error_of(path)
    assert message.startswith(f"{path}: 1 invalid record(s): record {record_id!r}: ")
    assert reason in message
    assert message.endswith(f"{FIX} 119 valid records")


@pytest.mark.parametrize(
    ("symbol", "reason"),
    [
        ("Xx", "unknown element 'Xx'"),
        ("fe", "unknown element 'fe'"),
        ("Lr", "element Lr (Z=103) is beyond Z=100"),
        ("Og", "element Og (Z=118) is beyond Z=100"),
    ],
)
def test_unknown_element(
    tmp_path: Path, gap_file: dict[str, Any], symbol: str, reason: str
) -> None:
    species = list(gap_file["records"][3]["structure"]["species"])
    species[-1] = symbol
    message = error_of(write(tmp_path, broken(gap_file, 3, species=species)))
    assert f"record {gap_file['records'][3]['id']!r}: {reason}" in message


def test_duplicate_ids_with_different_structures_reject_both(
    tmp_path: Path, gap_file: dict[str, Any]
) -> None:
    data = broken(gap_file, 9, id=gap_file["records"][4]["id"])
    message = error_of(write(tmp_path, data))
    rid = gap_file["records"][4]["id"]
    reason = "duplicate id: records #4, #9 have different structures"
    assert f"2 invalid record(s): record {rid!r}: {reason}" in message
    dataset = load_dataset(write(tmp_path, data), skip_invalid=True)
    assert len(dataset) == 118
    assert rid not in dataset.ids


def test_repeated_id_without_splits_keeps_the_first(
    tmp_path: Path, gap_file: dict[str, Any]
) -> None:
    records = copy.deepcopy(gap_file["records"][:10])
    records.append({**copy.deepcopy(records[2]), "target": 1.0})
    path = write(tmp_path, records, "list.json")
    message = error_of(path)
    assert f"record {records[2]['id']!r}: duplicate id: record #10 repeats record #2" in message
    dataset = load_dataset(path, skip_invalid=True)
    assert dataset.ids == [r["id"] for r in records[:10]]
    assert dataset.records[2].target == records[2]["target"]


def test_cgcnn_folder_problems(tmp_path: Path) -> None:
    (tmp_path / "id_prop.csv").write_text("id,target\nmissing,1.5\nsub/x,2\nthree,1,2\n")
    message = error_of(tmp_path)
    header = "target 'target' is not a number (id_prop.csv has no header line; remove it)"
    assert f"4 invalid record(s): record 'id': {header}" in message
    assert f"record 'missing': no file {tmp_path / 'missing.cif'}" in message
    assert "record 'sub/x': id contains a path separator" in message
    assert "(and 1 more)" in message
    with pytest.raises(DataError, match="No record is valid: fix the data"):
        load_dataset(tmp_path, skip_invalid=True)


# -- skip_invalid ---------------------------------------------------------------------------


def test_skip_invalid_drops_reports_and_remaps_splits(
    tmp_path: Path, gap_file: dict[str, Any]
) -> None:
    data = broken(gap_file, 5, target=float("nan"))
    species = list(data["records"][40]["structure"]["species"])
    data["records"][40]["structure"]["species"] = ["Xx", *species[1:]]
    data["records"][77]["structure"]["lattice"] = [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
    path = write(tmp_path, data)
    ids = [r["id"] for r in gap_file["records"]]

    message = error_of(path)
    assert message.startswith(f"{path}: 3 invalid record(s): record {ids[5]!r}: target is NaN; ")
    assert message.endswith(f"{FIX} 117 valid records")

    dataset = load_dataset(path, skip_invalid=True)
    assert len(dataset) == 117
    assert dataset.report.n_read == 120
    assert dataset.report.n_used == 117
    assert [(r.id, r.reason) for r in dataset.report.rejected] == [
        (ids[5], "target is NaN"),
        (ids[40], "unknown element 'Xx'"),
        (ids[77], "singular lattice (volume 0 A^3, vectors coplanar)"),
    ]
    assert "117 of 120 records used, 3 rejected" in dataset.report.summary()
    dropped = {5, 40, 77}
    for name, parts in gap_file["splits"].items():
        for part, old in parts.items():
            want = [ids[i] for i in old if i not in dropped]
            assert [dataset.records[i].id for i in dataset.splits[name][part]] == want
    targets = dataset.targets
    assert np.isfinite(targets).all()
    assert targets[5] == gap_file["records"][6]["target"]


# -- the checks themselves ------------------------------------------------------------------


def test_parse_target_values() -> None:
    assert parse_target(" 1.25 ") == 1.25
    assert parse_target(3) == 3.0
    assert parse_target(np.float32(0.5)) == 0.5
    cases = [(True, "not a number"), ("nan", "NaN"), ("-inf", "-inf"), ([1], "not a number")]
    for bad, reason in cases:
        with pytest.raises(RecordProblem, match=reason):
            parse_target(bad)


def test_structure_from_arrays_builds_the_structure() -> None:
    structure = structure_from_arrays([[3, 0, 0], [0, 3, 0], [0, 0, 3]], ["Na", "Cl"],
                                      [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure.composition.reduced_formula == "NaCl"
    assert math.isclose(structure.volume, 27.0)
    with pytest.raises(RecordProblem, match="lattice contains NaN or inf"):
        structure_from_arrays([[3, 0, 0], [0, float("inf"), 0], [0, 0, 3]], ["Na"], [[0, 0, 0]])
    with pytest.raises(RecordProblem, match="frac_coords contain NaN or inf"):
        structure_from_arrays(np.eye(3).tolist(), ["Na"], [[0, float("nan"), 0]])


def test_check_splits_accepts_published_form() -> None:
    raw = {"seed0": {"train": [0, 2], "val": [1], "test": [3]}}
    assert check_splits("f", raw, 4) == raw
    assert check_splits("f", None, 4) == {}


def test_other_record_problems(tmp_path: Path, gap_file: dict[str, Any]) -> None:
    good = gap_file["records"][0]
    records = [good, {**good, "id": None, "target": 2.0}, 5]
    message = error_of(write(tmp_path, records, "list.json"))
    assert "2 invalid record(s): record '#1': id is missing or not a string; " in message
    assert "record '#2': record is not a JSON object." in message
    frames = [ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]], info={"target": 1.0})]
    ase.io.write(tmp_path / "molecule.extxyz", frames, format="extxyz")
    message = error_of(tmp_path / "molecule.extxyz")
    assert "record '0': no periodic cell; give each frame a Lattice" in message
    assert message.endswith("No record is valid: fix the data")
