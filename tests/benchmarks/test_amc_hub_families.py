"""Committed hub families (``benchmarks/families/``) restored instead of trained again.

Uses the real committed CHGNet adapter module ``castelli_e_form``: a copy whose recipe names
the same family and profile is restored and loads; another profile, or a damaged weight
file, is refused so that the builder trains the module again.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
FAMILY, NAME = "chgnet-adapter", "castelli_e_form"


@pytest.fixture
def amc_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    monkeypatch.setenv("MOMA_RUNS", str(tmp_path / "runs"))
    monkeypatch.syspath_prepend(str(BENCH))
    import amc_hub

    committed = tmp_path / "families"
    shutil.copytree(BENCH / "families" / FAMILY / NAME, committed / FAMILY / NAME)
    monkeypatch.setattr(amc_hub, "COMMITTED", committed)
    yield amc_hub


def test_a_committed_module_of_the_same_recipe_is_restored(amc_hub: ModuleType,
                                                           tmp_path: Path) -> None:
    from moma.modules.store import load_module

    out = tmp_path / "runs" / "hub" / FAMILY / NAME
    assert amc_hub.restore_committed(FAMILY, "full", NAME, out)
    card = json.loads((out / "card.json").read_text())
    assert card["extra"]["recipe"]["family"] == FAMILY
    assert load_module(out).card.task == card["task"]
    assert not list(out.parent.glob(".*.restoring"))


def test_another_profile_or_a_damaged_copy_is_trained_again(amc_hub: ModuleType,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "runs" / "hub" / FAMILY / NAME
    assert not amc_hub.restore_committed(FAMILY, "quick", NAME, out)
    weights = amc_hub.COMMITTED / FAMILY / NAME / "module.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    assert not amc_hub.restore_committed(FAMILY, "full", NAME, out)
    assert not out.exists()
    assert not list(out.parent.glob(".*.restoring"))
