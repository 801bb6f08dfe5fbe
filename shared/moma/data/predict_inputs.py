"""Structures to predict, with their reference values when the input has them.

``predict`` reads what :func:`moma.data.structure_files.read_structures` reads (CIF, POSCAR,
JSON structures or dataset files) plus extxyz files. Where the input holds a reference value
(the ``target`` of a JSON dataset record, ``info[target]`` of an extxyz frame) it is returned
beside the structure, so the output can show the true value next to the prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Structure

from moma.data.readers import structure_from_atoms
from moma.data.structure_files import file_stem, read_json_file, read_structures
from moma.data.validate import RecordProblem, one_line
from moma.errors import DataError

EXTXYZ_SUFFIXES = (".extxyz", ".xyz", ".extxyz.gz", ".xyz.gz")


@dataclass
class PredictInput:
    id: str
    structure: Structure
    true_value: float | None = None


def read_prediction_inputs(paths: Sequence[str | Path], target: str = "target"
                           ) -> list[PredictInput]:
    """Every structure of ``paths`` in order, extxyz included; true values where present."""
    out: list[PredictInput] = []
    if not paths:
        read_structures(paths)  # the one-line "no structure files given" error
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_file() and path.name.lower().endswith(EXTXYZ_SUFFIXES):
            out.extend(_extxyz(path, target))
            continue
        truths = (_json_truths(path, target)
                  if path.is_file() and path.name.lower().endswith((".json", ".json.gz"))
                  else {})
        out.extend(PredictInput(i, s, truths.get(i)) for i, s in read_structures([path]))
    ids = [p.id for p in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"two inputs yield the id {dup!r}; rename one of the files")
    return out


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _json_truths(path: Path, target: str) -> dict[str, float]:
    data = read_json_file(path)
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        return {}
    stem = file_stem(path)
    truths = {}
    for index, record in enumerate(records):
        if isinstance(record, dict):
            value = _number(record.get("target", record.get(target)))
            if value is not None:
                truths[f"{stem}:{record.get('id', index)}"] = value
    return truths


def _extxyz(path: Path, target: str) -> list[PredictInput]:
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as exc:
        raise DataError(f"{path}: not a readable extxyz file ({one_line(exc)}); fix the "
                        "file") from None
    frames = frames if isinstance(frames, list) else [frames]
    stem = file_stem(path)
    out = []
    for index, atoms in enumerate(frames):
        frame_id = f"{stem}:{atoms.info.get('id', index)}"
        try:
            structure = structure_from_atoms(atoms)
        except RecordProblem as problem:
            raise DataError(f"{path}: frame {index}: {problem}; fix or remove it") from None
        out.append(PredictInput(frame_id, structure, _number(atoms.info.get(target))))
    return out
