"""Size limits of every data reader, checked while the bytes stream in.

A 2 MB ``.json.gz`` can expand to gigabytes, a CIF can be any size, a cell can hold any number
of atoms: each reader stops at a documented limit with an error naming the limit and the
environment variable that raises it (README, "Data limits"). The defaults hold every dataset
this project ships with a wide margin (the largest expands to 2.7 MB; the largest structure
has 312 atoms).

| limit | default | variable |
|---|---|---|
| bytes of one JSON / extxyz / CSV file, after decompression | 512 MiB | ``MOMA_MAX_DATA_BYTES`` |
| bytes of one CIF or POSCAR file | 16 MiB | ``MOMA_MAX_STRUCTURE_FILE_BYTES`` |
| atoms in one structure (every backbone) | 1,000 | ``MOMA_MAX_ATOMS`` |
| JSON nesting depth | Python's recursion limit | (not adjustable) |
| volume per atom | at least 1 A^3 | (not adjustable: denser is not a material) |

Memory: parsing JSON takes about ten times the text's size in Python objects (512 MiB of
JSON: about 5 GB); the per-atom cost of each backbone is in the README.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from moma.errors import DataError

CHUNK = 1024 * 1024
DEFAULTS = {
    "MOMA_MAX_DATA_BYTES": 512 * 1024 * 1024,
    "MOMA_MAX_STRUCTURE_FILE_BYTES": 16 * 1024 * 1024,
    "MOMA_MAX_ATOMS": 1000,
}
MIN_VOLUME_PER_ATOM = 1.0


class LimitError(DataError):
    """Input over one of the documented limits."""


def limit(name: str) -> int:
    """The limit ``name`` (one of :data:`DEFAULTS`), from the environment if set there."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return DEFAULTS[name]
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"{name}={raw[:40]!r} is not a positive whole number: set it to a limit "
                        f"such as {DEFAULTS[name]} (the default), or unset it")
    return value


def _over(path: Path, what: str, name: str, size: str) -> LimitError:
    return LimitError(f"{path}: {what} {size}, over the limit of {limit(name)} bytes ({name}): "
                      f"if the file is genuine, raise it, e.g. {name}={2 * limit(name)}; a small "
                      "compressed file that expands this far is a decompression bomb")


def read_bounded(path: Path, name: str = "MOMA_MAX_DATA_BYTES") -> bytes:
    """The bytes of ``path`` (decompressed when it ends in ``.gz``), at most ``limit(name)``.

    A compressed file is inflated chunk by chunk and abandoned as soon as it passes the limit,
    so a bomb never occupies more than the limit in memory.
    """
    cap = limit(name)
    if not path.name.lower().endswith(".gz"):
        size = path.stat().st_size
        if size > cap:
            raise _over(path, "is", name, f"{size} bytes")
        with path.open("rb") as handle:
            data = handle.read(cap + 1)
        if len(data) > cap:
            raise _over(path, "grew to", name, "more bytes while being read")
        return data
    parts: list[bytes] = []
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                total += len(chunk)
                if total > cap:
                    raise _over(path, "expands past", name, f"{cap} bytes")
                parts.append(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read it ({str(exc)[:120]}); check the file"
                        ) from None
    return b"".join(parts)


def file_too_large(path: Path, name: str = "MOMA_MAX_STRUCTURE_FILE_BYTES") -> str | None:
    """Why ``path`` is refused before any parser opens it (over ``limit(name)`` bytes), or
    None."""
    try:
        size = path.stat().st_size
    except OSError:
        return None  # the parser reports a missing file in its own words
    if size > limit(name):
        return str(_over(path, "is", name, f"{size} bytes"))
    return None


def check_cell(n_atoms: int, volume: float) -> str | None:
    """Why a cell is refused (too many atoms, or denser than matter), or None."""
    cap = limit("MOMA_MAX_ATOMS")
    if n_atoms > cap:
        return (f"structure has {n_atoms} atoms, over the limit of {cap} (MOMA_MAX_ATOMS; "
                "memory grows with the atom count, see the README): raise it if you have the "
                "memory, or use a smaller cell")
    if volume < MIN_VOLUME_PER_ATOM * n_atoms:
        return (f"cell volume {volume:.3g} A^3 for {n_atoms} atoms is under "
                f"{MIN_VOLUME_PER_ATOM:g} A^3 per atom, denser than any material: check the "
                "lattice units (Angstrom) and the coordinates")
    return None
