"""Checks every dataset reader applies, so that all formats refuse the same bad input.

Readers turn each source record into either a :class:`Record` or a :class:`Rejection` (with
the record id and the reason in words) and hand the list to :func:`finalize`, which adds the
cross-record checks (duplicate ids), checks the published splits, and then either fails
(strict, the default) or drops the rejected records, remapping the splits, and lists them in
the report. Nothing is dropped silently.

Duplicate ids. An id must name one crystal: records sharing an id with *different* structures
are all rejected, since nothing tells which one is right. Records repeating an id with the
*same* structure are repeated measurements of one crystal: in a file with published splits
(records addressed by position, such as ``expt_eform``, which holds 33 such ids) they are kept
so the splits stay comparable with published results; without published splits every repeat
after the first is rejected, since a random split could put the same crystal in train and test.
Either way, downstream code that keys structures or graphs by id stays correct.

Records are dropped by position rather than with :func:`moma.data.records.drop_records`
(which drops by id): a record whose structure does not parse has no :class:`Record` to drop,
and a kept repeat of an id must survive the rejection of another record with that id.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies, get_el_sp

from moma.data.limits import check_cell
from moma.data.records import (
    SPLIT_PARTS,
    Dataset,
    Record,
    Rejection,
    ValidationReport,
    raise_for_rejections,
    structure_fingerprint,
)
from moma.errors import DataError

MAX_Z = 100  # the CGCNN atom table and the featurizers cover Z = 1..100
MIN_RELATIVE_VOLUME = 1e-6  # |det L| / (|a| |b| |c|) below this: the lattice vectors are coplanar

Row = Record | Rejection
Splits = dict[str, dict[str, list[int]]]


class RecordProblem(Exception):
    """Why one record cannot be used; readers turn it into a :class:`Rejection`."""


def one_line(exc: BaseException, limit: int = 160) -> str:
    """A third-party exception as one short line, for a rejection reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_id(raw: object) -> str:
    """A record id: a non-empty string or an integer (stored as its decimal string)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | np.integer):
        raise RecordProblem("id is missing or not a string")
    text = str(raw).strip()
    if not text:
        raise RecordProblem("id is empty")
    return text


def parse_target(raw: object, name: str = "target") -> float:
    """A finite float target; numbers given as text (CSV cells) are accepted."""
    if raw is None:
        raise RecordProblem(f"no {name!r} value")
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise RecordProblem(f"target {raw.strip()[:40]!r} is not a number") from None
    elif isinstance(raw, bool) or not isinstance(raw, int | float | np.integer | np.floating):
        raise RecordProblem(f"target {raw!r:.40} is not a number")
    else:
        value = float(raw)
    if math.isnan(value):
        raise RecordProblem("target is NaN")
    if math.isinf(value):
        raise RecordProblem(f"target is {'+' if value > 0 else '-'}inf")
    return value


@lru_cache(maxsize=1024)
def _symbol_problem(symbol: str) -> str | None:
    try:
        specie = get_el_sp(symbol)
    except (ValueError, KeyError, TypeError):
        return f"unknown element {symbol!r}"
    if isinstance(specie, DummySpecies):
        return f"unknown element {symbol!r}"
    if specie.Z > MAX_Z:
        return f"element {symbol} (Z={specie.Z}) is beyond Z={MAX_Z}, which the models cover"
    return None


def check_symbol(symbol: object) -> None:
    """Refuse anything but a real element (or ion) symbol with Z <= 100."""
    if not isinstance(symbol, str):
        raise RecordProblem(f"species entry {symbol!r:.40} is not an element symbol")
    problem = _symbol_problem(symbol)
    if problem:
        raise RecordProblem(problem)


def check_lattice(matrix: np.ndarray) -> None:
    """Refuse non-finite, zero-length or coplanar lattice vectors (rows of ``matrix``)."""
    if not np.isfinite(matrix).all():
        raise RecordProblem("lattice contains NaN or inf")
    lengths = np.linalg.norm(matrix, axis=1)
    if (lengths < 1e-8).any():
        raise RecordProblem("singular lattice (a lattice vector has zero length)")
    volume = abs(float(np.linalg.det(matrix)))
    if volume < MIN_RELATIVE_VOLUME * float(np.prod(lengths)):
        raise RecordProblem(f"singular lattice (volume {volume:.3g} A^3, vectors coplanar)")


def _as_array(raw: object, what: str) -> np.ndarray:
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise RecordProblem(f"{what} is not numeric") from None


def structure_from_arrays(lattice: object, species: object, frac_coords: object) -> Structure:
    """A structure from the shared format's ``lattice`` (3x3, A), ``species``, ``frac_coords``."""
    matrix = _as_array(lattice, "lattice")
    if matrix.shape != (3, 3):
        raise RecordProblem(f"lattice has shape {_shape(matrix)}, expected 3x3")
    if not isinstance(species, list) or not species:
        raise RecordProblem("species must be a non-empty list of element symbols")
    coords = _as_array(frac_coords, "frac_coords")
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise RecordProblem(f"frac_coords has shape {_shape(coords)}, expected n x 3")
    if len(species) != len(coords):
        raise RecordProblem(f"{len(species)} species but {len(coords)} frac_coords")
    check_lattice(matrix)
    if problem := check_cell(len(species), abs(float(np.linalg.det(matrix)))):
        raise RecordProblem(problem)
    if not np.isfinite(coords).all():
        raise RecordProblem("frac_coords contain NaN or inf")
    for symbol in species:
        check_symbol(symbol)
    try:
        return Structure(Lattice(matrix), species, coords)
    except Exception as exc:
        raise RecordProblem(f"unparseable structure: {one_line(exc)}") from None


def _shape(array: np.ndarray) -> str:
    return "x".join(str(n) for n in array.shape) or "scalar"


def check_structure(structure: Structure) -> Structure:
    """Apply the structure checks to an already built structure (CIF, POSCAR, pymatgen, ASE)."""
    if len(structure) == 0:
        raise RecordProblem("structure has no sites")
    check_lattice(np.asarray(structure.lattice.matrix, dtype=np.float64))
    if problem := check_cell(len(structure), float(structure.volume)):
        raise RecordProblem(problem)
    if not np.isfinite(structure.frac_coords).all():
        raise RecordProblem("frac_coords contain NaN or inf")
    for index, site in enumerate(structure):
        if not site.is_ordered:
            raise RecordProblem(
                f"site {index} is disordered ({site.species}); models need one element per site: "
                "order the structure first"
            )
    for specie in {site.specie for site in structure}:
        if isinstance(specie, DummySpecies):
            raise RecordProblem(f"unknown element {str(specie)!r}")
        check_symbol(str(specie))
    return structure


def build_row(
    index: int,
    raw_id: object,
    raw_target: object,
    target_name: str,
    make_structure: Callable[[], Structure],
) -> Row:
    """One record, or its rejection listing every problem found (id, target, structure)."""
    problems: list[str] = []
    try:
        record_id = parse_id(raw_id)
    except RecordProblem as problem:
        record_id = f"#{index}"
        problems.append(str(problem))
    target: float | None = None
    try:
        target = parse_target(raw_target, target_name)
    except RecordProblem as problem:
        problems.append(str(problem))
    structure: Structure | None = None
    try:
        structure = make_structure()
    except RecordProblem as problem:
        problems.append(str(problem))
    except Exception as exc:  # a third-party parser failing on this record's text
        problems.append(f"unparseable structure: {one_line(exc)}")
    if problems or structure is None:
        return Rejection(record_id, "; ".join(problems))
    return Record(record_id, structure, target)


def duplicate_rejections(rows: Sequence[Row], *, keep_repeats: bool) -> dict[int, Rejection]:
    """Positions to reject because of duplicate ids (see the module docstring for the rule)."""
    positions: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        if isinstance(row, Record):
            positions[row.id].append(index)
    out: dict[int, Rejection] = {}
    for record_id, where in positions.items():
        if len(where) < 2:
            continue
        records = [rows[i] for i in where]
        prints = {structure_fingerprint("", r.structure) for r in records if isinstance(r, Record)}
        listed = ", ".join(f"#{i}" for i in where)
        if len(prints) > 1:
            for i in where:
                out[i] = Rejection(
                    record_id, f"duplicate id: records {listed} have different structures"
                )
        elif not keep_repeats:
            for i in where[1:]:
                reason = f"duplicate id: record #{i} repeats record #{where[0]}"
                out[i] = Rejection(record_id, reason)
    return out


def check_splits(where: str, raw: Any, n_records: int) -> Splits:
    """Published splits as index lists; any bad entry is an error naming the split and index."""
    if raw is None:
        return {}
    fix = "fix the split or remove 'splits' to use a seeded random split"
    if not isinstance(raw, dict):
        raise DataError(f"{where}: 'splits' must map names to train/val/test index lists; {fix}")
    splits: Splits = {}
    for name, parts in raw.items():
        if not isinstance(parts, dict):
            raise DataError(f"{where}: split {name!r} is not an object with train/val/test; {fix}")
        unknown = sorted(set(parts) - set(SPLIT_PARTS))
        missing = [part for part in SPLIT_PARTS if part not in parts]
        if unknown or missing:
            problem = f"has no {missing[0]!r} list" if missing else f"has a part {unknown[0]!r}"
            raise DataError(f"{where}: split {name!r} {problem} (expected train, val, test); {fix}")
        seen: dict[int, str] = {}
        splits[name] = {}
        for part in SPLIT_PARTS:
            indices = parts[part]
            if not isinstance(indices, list):
                raise DataError(f"{where}: split {name}/{part} is not a list of indices; {fix}")
            for index in indices:
                if isinstance(index, bool) or not isinstance(index, int):
                    raise DataError(
                        f"{where}: split {name}/{part} entry {index!r:.40} is not an integer "
                        f"index; {fix}"
                    )
                if not 0 <= index < n_records:
                    raise DataError(
                        f"{where}: split {name}/{part} index {index} is out of range (the file has "
                        f"{n_records} records, indices 0..{n_records - 1}); {fix}"
                    )
                if index in seen:
                    raise DataError(
                        f"{where}: split {name}: index {index} is listed in both {seen[index]} "
                        f"and {part}; {fix}"
                        if seen[index] != part
                        else f"{where}: split {name}/{part} lists index {index} twice; {fix}"
                    )
                seen[index] = part
            splits[name][part] = list(indices)
    return splits


def remap_splits(splits: Splits, keep: Sequence[int]) -> Splits:
    """Splits over the kept positions; entries of dropped records leave their split."""
    new_index = {old: new for new, old in enumerate(keep)}
    return {
        name: {part: [new_index[i] for i in idx if i in new_index] for part, idx in parts.items()}
        for name, parts in splits.items()
    }


def finalize(
    rows: Sequence[Row],
    *,
    where: str,
    name: str,
    target: str,
    unit: str,
    splits: Splits,
    skip_invalid: bool,
) -> Dataset:
    """The dataset from checked rows: strict failure, or rejected rows dropped and reported."""
    if not rows:
        raise DataError(f"{where}: no records; the dataset must hold at least one structure")
    duplicates = duplicate_rejections(rows, keep_repeats=bool(splits))
    rows = [duplicates.get(i, row) for i, row in enumerate(rows)]
    keep = [i for i, row in enumerate(rows) if isinstance(row, Record)]
    rejections = [row for row in rows if isinstance(row, Rejection)]
    if not keep:
        raise_for_rejections(where, rejections, "No record is valid: fix the data")
    if rejections and not skip_invalid:
        raise_for_rejections(
            where,
            rejections,
            f"Fix or remove them, or pass --skip-invalid to use the {len(keep)} valid records",
        )
    records = [row for row in rows if isinstance(row, Record)]
    report = ValidationReport(source=where, n_read=len(rows), rejected=rejections)
    return Dataset(
        name=name,
        target=target,
        unit=unit,
        records=records,
        splits=remap_splits(splits, keep) if rejections else splits,
        report=report,
        source=where,
    )
