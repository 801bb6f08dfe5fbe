"""Shared fixtures: real data from MOMA_SHARED, loaded once per session."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymatgen.core import Structure

from moma.paths import moe18_dir, shared_dir


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: set MOMA_SHARED to the shared data folder")
    return path


def load_raw(task: str) -> dict[str, Any]:
    path = _require(shared_dir() / "data" / "downstream" / f"{task}.json.gz")
    with gzip.open(path) as handle:
        return json.load(handle)  # type: ignore[no-any-return]


def to_structure(record: dict[str, Any]) -> Structure:
    s = record["structure"]
    return Structure(s["lattice"], s["species"], s["frac_coords"])


@pytest.fixture(scope="session")
def jarvis_2d_eform() -> dict[str, Any]:
    return load_raw("jarvis_2d_eform")


@pytest.fixture(scope="session")
def castelli() -> dict[str, Any]:
    path = _require(shared_dir() / "data" / "hub" / "castelli_perovskites.json.gz")
    with gzip.open(path) as handle:
        return json.load(handle)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def moe18() -> Path:
    return _require(moe18_dir())


@pytest.fixture(scope="session")
def moe18_manifest(moe18: Path) -> dict[str, Any]:
    return json.loads((moe18 / "manifest.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
