"""Structure files: CIF, POSCAR/CONTCAR, and JSON (one structure or a dataset's records).

These parsers serve two callers. :func:`read_structures` reads prediction inputs and fails on
the first bad file with a :class:`DataError` naming it. The dataset readers use the same
parsers per record, where a problem (:class:`RecordProblem`) becomes a rejection instead.
Every structure passes the checks of :mod:`moma.data.validate`, so a file the models cannot use
(unknown element, disordered site, singular lattice) is refused here, with its name, and not
deep inside featurization.
"""

from __future__ import annotations

import json
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymatgen.core import Structure
from pymatgen.io.cif import CifParser
from pymatgen.io.vasp import Poscar

from moma.data.limits import LimitError, file_too_large, read_bounded
from moma.data.validate import (
    RecordProblem,
    check_structure,
    check_symbol,
    one_line,
    parse_id,
    structure_from_arrays,
)
from moma.errors import DataError

STRUCTURE_FORMATS = "CIF (.cif), POSCAR/CONTCAR (or .vasp), or JSON (.json, .json.gz)"


def file_stem(path: Path) -> str:
    """The name without its format suffixes (``a.json.gz`` -> ``a``, ``POSCAR`` -> ``POSCAR``)."""
    name = path.name
    for suffix in (".gz", ".json", ".cif", ".vasp", ".poscar", ".extxyz", ".xyz"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def read_json_file(path: Path) -> Any:
    """Parsed JSON of ``path`` (gzip when it ends in ``.gz``); unreadable or empty is an error."""
    try:
        raw = read_bounded(path)  # decompressed while counting: a bomb stops at the limit
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read it ({one_line(exc)}); check the file") from None
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; it must hold JSON records")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: not valid JSON ({one_line(exc)}); fix or re-export the file"
        ) from None
    except RecursionError:
        raise LimitError(f"{path}: JSON nested deeper than this reader allows (Python's "
                         "recursion limit): datasets are a few levels deep; fix the file") from None


def structure_from_dict(obj: object) -> Structure:
    """A structure from the shared format ``{lattice, species, frac_coords}`` or a pymatgen
    ``Structure.as_dict()`` (recognised by its ``sites``)."""
    if not isinstance(obj, dict):
        raise RecordProblem("no 'structure' object")
    if "sites" in obj:
        try:
            structure = Structure.from_dict(obj)
        except Exception as exc:
            _raise_unknown_elements(obj)
            raise RecordProblem(f"unparseable pymatgen structure: {one_line(exc)}") from None
        return check_structure(structure)
    missing = [key for key in ("lattice", "species", "frac_coords") if key not in obj]
    if missing:
        raise RecordProblem(
            f"structure has no {', '.join(missing)} (expected lattice, species, frac_coords, "
            "or a pymatgen Structure.as_dict())"
        )
    return structure_from_arrays(obj["lattice"], obj["species"], obj["frac_coords"])


def _raise_unknown_elements(obj: dict[str, Any]) -> None:
    """Name an unknown element of a pymatgen dict that did not parse, when that is the cause."""
    sites = obj.get("sites")
    for site in sites if isinstance(sites, list) else []:
        species = site.get("species") if isinstance(site, dict) else None
        for entry in species if isinstance(species, list) else []:
            if isinstance(entry, dict) and "element" in entry:
                check_symbol(entry["element"])


def read_cif(path: Path) -> list[Structure]:
    """Every structure of a CIF file, as written (no primitive reduction)."""
    if not path.is_file():
        raise RecordProblem(f"no file {path}")
    if too_large := file_too_large(path):
        raise RecordProblem(too_large)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = CifParser(path).parse_structures(primitive=False, on_error="raise")
    except Exception as exc:
        raise RecordProblem(f"unparseable CIF {path.name}: {one_line(exc)}") from None
    return [check_structure(s) for s in structures]


def read_poscar(path: Path) -> Structure:
    """A POSCAR/CONTCAR structure; element names must be in the file or a POTCAR beside it."""
    if not path.is_file():
        raise RecordProblem(f"no file {path}")
    if too_large := file_too_large(path):
        raise RecordProblem(too_large)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            structure = Poscar.from_file(path).structure
    except Exception as exc:
        raise RecordProblem(f"unparseable POSCAR {path.name}: {one_line(exc)}") from None
    if any("cannot be determined" in str(w.message) for w in caught):
        raise RecordProblem(
            f"{path.name} names no elements; add the element line of the VASP 5 format"
        )
    return check_structure(structure)


def _json_structures(path: Path) -> list[tuple[str, Structure]]:
    """One structure (a pymatgen dict or a bare shared-format structure) or every record."""
    data = read_json_file(path)
    stem = file_stem(path)
    if isinstance(data, dict) and ("sites" in data or "frac_coords" in data):
        try:
            return [(stem, structure_from_dict(data))]
        except RecordProblem as problem:
            raise DataError(f"{path}: {problem}; fix the file or leave it out") from None
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise DataError(
            f"{path}: neither a structure nor a list of records; expected a pymatgen "
            "Structure.as_dict(), a {lattice, species, frac_coords} object, or a dataset file"
        )
    if not records:
        raise DataError(f"{path}: no records; the file must hold at least one structure")
    out: list[tuple[str, Structure]] = []
    for index, record in enumerate(records):
        record_id = f"#{index}"
        try:
            if not isinstance(record, dict):
                raise RecordProblem("record is not a JSON object")
            record_id = parse_id(record.get("id", index))
            structure = structure_from_dict(record.get("structure"))
        except RecordProblem as problem:
            raise DataError(
                f"{path}: record {record_id!r}: {problem}; fix or remove that record"
            ) from None
        out.append((f"{stem}:{record_id}", structure))
    return out


def structure_kind(path: Path) -> str | None:
    """``cif``, ``poscar`` or ``json`` from the file name; None for anything else."""
    name = path.name.lower()
    if name.endswith(".cif"):
        return "cif"
    if name.endswith((".json", ".json.gz")):
        return "json"
    if name.startswith(("poscar", "contcar")) or name.endswith((".vasp", ".poscar")):
        return "poscar"
    return None


def _read_one(path: Path) -> list[tuple[str, Structure]]:
    kind = structure_kind(path)
    if kind is None:
        raise DataError(f"{path}: unknown structure file type; use {STRUCTURE_FORMATS}")
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; it must hold a structure")
    if kind == "json":
        return _json_structures(path)
    try:
        if kind == "poscar":
            return [(file_stem(path), read_poscar(path))]
        structures = read_cif(path)
    except RecordProblem as problem:
        raise DataError(f"{path}: {problem}; fix the file or leave it out") from None
    stem = file_stem(path)
    if len(structures) == 1:
        return [(stem, structures[0])]
    return [(f"{stem}:{index}", s) for index, s in enumerate(structures)]


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder stands for its structure files (sorted by name)."""
    files: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and structure_kind(p))
            if not found:
                raise DataError(f"{path}: folder holds no structure files ({STRUCTURE_FORMATS})")
            files.extend(found)
        else:
            files.append(path)
    return files


def read_structures(paths: Sequence[str | Path]) -> list[tuple[str, Structure]]:
    """``(id, structure)`` for every structure in ``paths`` (files or folders), in order.

    Ids are file stems, ``stem:record_id`` for a JSON dataset file and ``stem:k`` for the k-th
    block of a multi-structure CIF; two inputs yielding one id is an error, since predictions
    are reported by id.
    """
    if not paths:
        raise DataError("no structure files given; pass one or more CIF, POSCAR or JSON files")
    out: list[tuple[str, Structure]] = []
    origin: dict[str, Path] = {}
    for path in _expand(paths):
        for structure_id, structure in _read_one(path):
            if structure_id in origin:
                raise DataError(
                    f"{path}: id {structure_id!r} is also the id of a structure in "
                    f"{origin[structure_id]}; ids come from file names, so rename one of them"
                )
            origin[structure_id] = path
            out.append((structure_id, structure))
    return out
