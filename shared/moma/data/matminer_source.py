"""matminer datasets by name (``matminer:<dataset>``), read with matminer's own loader.

``matminer.datasets.load_dataset(name, data_home)`` reads ``<data_home>/<name>.<file_type>``
(for example ``jarvis_dft_2d.json.gz``, a pandas "split" JSON of monty-encoded objects) and
downloads it first when it is missing; it checks the sha256 of a download but not of a file
already there. The data home is ``$MOMA_MATMINER_HOME`` when set, otherwise matminer's default
(``$MATMINER_DATA`` or the matminer package folder). Without internet the download fails: the
error says where to put a copy fetched on a machine that has internet.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from moma.data.records import Dataset
from moma.data.structure_files import structure_from_dict
from moma.data.validate import RecordProblem, build_row, check_structure, finalize, one_line
from moma.errors import DataError

ENV_HOME = "MOMA_MATMINER_HOME"
ID_COLUMNS = ("jid", "mpid", "material_id", "id")
DOWNLOAD_TIMEOUT_S = 60.0  # a stalled connection fails instead of hanging (matminer sets none)


def matminer_data_home() -> Path:
    """Where matminer looks for (and downloads) dataset files."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    from matminer.datasets.utils import _get_data_home

    return Path(_get_data_home(None))


def load_matminer(
    name: str, *, target: str | None, task: str | None = None, skip_invalid: bool = False
) -> Dataset:
    """The matminer dataset ``name`` with ``target`` (a column name) as the property."""
    from matminer.datasets import get_available_datasets, load_dataset
    from matminer.datasets.dataset_retrieval import get_dataset_attribute

    where = f"matminer:{name}"
    known = get_available_datasets(print_format=None)
    if name not in known:
        close = [k for k in known if name.lower() in k.lower()]
        close += [k for k in difflib.get_close_matches(name, known, n=3) if k not in close]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise DataError(
            f"{where}: matminer has no dataset {name!r}{hint}; see "
            "matminer.datasets.get_available_datasets()"
        )
    columns: dict[str, str] = get_dataset_attribute(name, "columns")
    target = _check_columns(where, list(columns), target)
    home = matminer_data_home()
    path = home / f"{name}.{get_dataset_attribute(name, 'file_type')}"
    existed = path.exists()
    try:
        with _download_timeout(), contextlib.redirect_stdout(sys.stderr):
            frame = load_dataset(name, data_home=str(home), download_if_missing=True, pbar=False)
    except Exception as exc:
        if existed:
            raise DataError(
                f"{path}: cannot read matminer dataset {name!r} ({one_line(exc)}); delete the "
                "file so it is downloaded again, or replace it with a good copy"
            ) from None
        with contextlib.suppress(OSError):
            path.unlink()  # a partial download would be read later without any hash check
        raise DataError(
            f"{where}: {path.name} is not in {home} and could not be downloaded "
            f"({one_line(exc)}); download it once on a machine with internet (matminer."
            f"datasets.load_dataset({name!r})) and copy {path.name} into {home}, or set "
            f"{ENV_HOME} to a folder that holds it"
        ) from None
    return _to_dataset(frame, where, name, target, task, columns.get(target, ""), skip_invalid)


def _check_columns(where: str, columns: list[str], target: str | None) -> str:
    """The target column, after checking it and the structure column exist."""
    listed = ", ".join(c for c in columns if c not in ("structure", *ID_COLUMNS))
    if target is None:
        raise DataError(f"{where}: pick the target column with --target (columns: {listed})")
    if target not in columns:
        raise DataError(f"{where}: has no column {target!r}; pick one of {listed} with --target")
    if "structure" not in columns:
        raise DataError(f"{where}: has no 'structure' column; MoMa needs crystal structures")
    return target


def _to_dataset(
    frame: Any,
    where: str,
    name: str,
    target: str,
    task: str | None,
    unit: str,
    skip_invalid: bool,
) -> Dataset:
    _check_columns(where, [str(c) for c in frame.columns], target)
    id_column = next((c for c in ID_COLUMNS if c in frame.columns), None)
    index = list(frame.index)
    ids = frame[id_column].tolist() if id_column else index
    structures = frame["structure"].tolist()
    targets = frame[target].tolist()
    rows = [
        build_row(i, _row_id(ids[i], index[i]), targets[i], target,
                  functools.partial(_structure, structures[i]))
        for i in range(len(frame))
    ]
    return finalize(
        rows,
        where=where,
        name=task or f"{name}:{target}",
        target=target,
        unit=unit,
        splits={},
        skip_invalid=skip_invalid,
    )


def _row_id(value: object, fallback: object) -> object:
    """The id column's value, or the row index where it is empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return fallback
    return value


def _structure(value: object) -> Structure:
    if isinstance(value, Structure):
        return check_structure(value)
    if isinstance(value, dict):
        return structure_from_dict(value)
    raise RecordProblem(f"no structure (found {type(value).__name__})")


@contextlib.contextmanager
def _download_timeout() -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
