"""Dataset readers: every supported source becomes a validated :class:`Dataset`.

Sources, recognised by form:

1. the shared JSON format (``.json``/``.json.gz`` with ``records`` of ``{id, target, structure:
   {lattice, species, frac_coords}}`` and published ``splits``), including multi-target files
   (a ``targets`` map; ``target=`` picks one and the name becomes ``task:target``);
2. a JSON list (or ``{"records": [...]}``) whose structures are pymatgen ``Structure.as_dict()``;
3. a folder in CGCNN's layout: ``id_prop.csv`` (``id,target`` per line, no header) + ``<id>.cif``;
4. an extxyz file (``.extxyz``/``.xyz``), target in ``atoms.info[target or "target"]``;
5. ``matminer:<dataset>`` (see :mod:`moma.data.matminer_source`).

All of them share the checks of :mod:`moma.data.validate`: strict by default, or with
``skip_invalid=True`` the invalid records are dropped and listed in ``dataset.report``. Data
without published splits gets ``splits = {}``; the caller draws a seeded random split.
"""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from moma.data.limits import read_bounded
from moma.data.records import Dataset, Rejection
from moma.data.structure_files import file_stem, read_cif, read_json_file, structure_from_dict
from moma.data.validate import (
    RecordProblem,
    Row,
    build_row,
    check_lattice,
    check_splits,
    finalize,
    one_line,
    structure_from_arrays,
)
from moma.errors import DataError
from moma.paths import downstream_task_path

MATMINER_PREFIX = "matminer:"
SOURCES = (
    "a shared-format or pymatgen JSON dataset (.json, .json.gz), a CGCNN folder (id_prop.csv + "
    "<id>.cif), an extxyz file (.extxyz, .xyz), or matminer:<dataset>"
)


def load_dataset(
    source: str | Path,
    *,
    task: str | None = None,
    target: str | None = None,
    skip_invalid: bool = False,
) -> Dataset:
    """Read and validate a dataset from any supported source (see the module docstring).

    ``task`` overrides the dataset name; ``target`` picks the property of multi-target data
    (required there, and for matminer); ``skip_invalid`` drops invalid records (reported in
    ``dataset.report.rejected``) instead of failing on them.
    """
    if isinstance(source, str) and source.startswith(MATMINER_PREFIX):
        from moma.data.matminer_source import load_matminer

        name = source[len(MATMINER_PREFIX) :]
        return load_matminer(name, target=target, task=task, skip_invalid=skip_invalid)
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_cgcnn_folder(path, task, target, skip_invalid)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; check the path{_task_hint(path)}")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file; pass {SOURCES}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; it must hold dataset records")
    lower = path.name.lower()
    if lower.endswith((".json", ".json.gz")):
        return _load_json(path, task, target, skip_invalid)
    if lower.endswith((".extxyz", ".xyz", ".extxyz.gz", ".xyz.gz")):
        return _load_extxyz(path, task, target, skip_invalid)
    raise DataError(f"{path}: unknown dataset format; pass {SOURCES}")


def _task_hint(path: Path) -> str:
    """Point at the shared downstream file when the user typed a task name."""
    candidate = downstream_task_path(path.name)
    return f" (the shared task file is {candidate})" if candidate.is_file() else ""


# -- JSON: the shared format and pymatgen dicts ---------------------------------------------


def _load_json(path: Path, task: str | None, target: str | None, skip_invalid: bool) -> Dataset:
    data = read_json_file(path)
    if isinstance(data, list):
        meta: dict[str, Any] = {}
        records: Any = data
    elif isinstance(data, dict) and "records" in data:
        meta, records = data, data["records"]
    elif isinstance(data, dict) and ("sites" in data or "frac_coords" in data):
        raise DataError(
            f"{path}: holds a single structure, not a dataset; predict on it, or wrap records "
            'as [{"id", "target", "structure"}] to train'
        )
    else:
        raise DataError(
            f"{path}: expected a list of records or an object with 'records'; see the shared "
            "data format"
        )
    if not isinstance(records, list):
        raise DataError(f"{path}: 'records' must be a list of records; see the shared data format")
    if not records:
        raise DataError(f"{path}: no records; the dataset must hold at least one structure")
    key, name, target_name, unit = _json_target(path, meta, target)
    splits = check_splits(str(path), meta.get("splits"), len(records))
    rows = [_json_row(index, record, key) for index, record in enumerate(records)]
    return finalize(
        rows,
        where=str(path),
        name=task or name,
        target=target_name,
        unit=unit,
        splits=splits,
        skip_invalid=skip_invalid,
    )


def _json_target(path: Path, meta: dict[str, Any], target: str | None) -> tuple[str, str, str, str]:
    """(record key of the target, dataset name, target name, unit) of a JSON dataset."""
    task = str(meta.get("task") or file_stem(path))
    unit = str(meta.get("unit") or "")
    choices = meta.get("targets")
    if isinstance(choices, dict | list) and choices:
        listed = ", ".join(str(c) for c in choices)
        if target is None:
            raise DataError(f"{path}: holds several targets ({listed}); pick one with --target")
        if target not in choices:
            raise DataError(f"{path}: has no target {target!r}; pick one of {listed} with --target")
        unit = str(choices[target]) if isinstance(choices, dict) else unit
        return target, f"{task}:{target}", target, unit
    file_target = meta.get("target")
    if isinstance(file_target, str):
        if target not in (None, "target", file_target):
            raise DataError(
                f"{path}: holds one target, {file_target!r}, not {target!r}; drop --target or "
                f"pass {file_target!r}"
            )
        return "target", task, file_target, unit
    key = target or "target"
    return key, task, key, unit


def _json_row(index: int, record: object, key: str) -> Row:
    if not isinstance(record, dict):
        return Rejection(f"#{index}", "record is not a JSON object")
    structure = functools.partial(structure_from_dict, record.get("structure"))
    return build_row(index, record.get("id"), record.get(key), key, structure)


# -- CGCNN folder: id_prop.csv + <id>.cif ---------------------------------------------------


def _load_cgcnn_folder(
    folder: Path, task: str | None, target: str | None, skip_invalid: bool
) -> Dataset:
    table = folder / "id_prop.csv"
    if not table.is_file():
        raise DataError(
            f"{folder}: no id_prop.csv; a CGCNN data folder holds id_prop.csv ('id,target' per "
            "line, no header) and one <id>.cif per structure"
        )
    try:
        text = read_bounded(table).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{table}: cannot read it ({one_line(exc)}); check the file") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"{table}: the file is empty; write one 'id,target' line per structure")
    key = target or "target"
    rows = [_csv_row(folder, index, n, line, key) for index, (n, line) in enumerate(lines)]
    return finalize(
        rows,
        where=str(table),
        name=task or folder.resolve().name,
        target=key,
        unit="",
        splits={},
        skip_invalid=skip_invalid,
    )


def _csv_row(folder: Path, index: int, line_no: int, line: str, key: str) -> Row:
    cells = [cell.strip() for cell in next(csv.reader([line]))]
    record_id = cells[0] if cells and cells[0] else f"line {line_no}"
    if len(cells) != 2:
        found = f"line {line_no}: expected 'id,target', found {len(cells)} fields"
        return Rejection(record_id, found)
    if "/" in record_id or "\\" in record_id:
        return Rejection(record_id, "id contains a path separator; ids name <id>.cif in the folder")
    if line_no == 1 and not _is_number(cells[1]):
        return Rejection(
            record_id,
            f"target {cells[1][:40]!r} is not a number (id_prop.csv has no header line; remove it)",
        )
    cif = functools.partial(_single_cif, folder / f"{record_id}.cif")
    return build_row(index, record_id, cells[1], key, cif)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _single_cif(path: Path) -> Structure:
    structures = read_cif(path)
    if len(structures) != 1:
        raise RecordProblem(f"{path.name} holds {len(structures)} structures; keep one per file")
    return structures[0]


# -- extxyz (ASE) ---------------------------------------------------------------------------


def _load_extxyz(path: Path, task: str | None, target: str | None, skip_invalid: bool) -> Dataset:
    import ase.io

    text = read_bounded(path)  # bounded before ASE builds any frame
    try:
        frames = ase.io.read(io.StringIO(text.decode("utf-8")), index=":", format="extxyz")
    except Exception as exc:
        raise DataError(
            f"{path}: not a readable extxyz file ({one_line(exc)}); fix the file"
        ) from None
    frames = frames if isinstance(frames, list) else [frames]
    key = target or "target"
    rows = [
        build_row(index, atoms.info.get("id", index), _frame_target(atoms, key), key,
                  functools.partial(structure_from_atoms, atoms))
        for index, atoms in enumerate(frames)
    ]
    return finalize(
        rows,
        where=str(path),
        name=task or file_stem(path),
        target=key,
        unit="",
        splits={},
        skip_invalid=skip_invalid,
    )


def _frame_target(atoms: Any, key: str) -> object:
    """``atoms.info[key]``; ASE moves energy-like keys to its calculator, so look there too."""
    if key in atoms.info:
        return atoms.info[key]
    results = getattr(atoms.calc, "results", None) or {}
    return results.get(key)


def structure_from_atoms(atoms: Any) -> Structure:
    """A structure from ASE atoms; the cell must span three dimensions (treated as periodic)."""
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if not cell.any():
        raise RecordProblem("no periodic cell; give each frame a Lattice (3 cell vectors)")
    check_lattice(cell)
    positions = np.asarray(atoms.positions, dtype=np.float64)
    frac = np.linalg.solve(cell.T, positions.T).T
    return structure_from_arrays(cell, list(atoms.get_chemical_symbols()), frac)
