"""Candidate modules for a compose (compatible ones only, never one trained on the task) and
AMC selection over them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from moma.amc.leakage import leaks, same_task
from moma.amc.screening import screen_candidates
from moma.amc.selection import select
from moma.backbones.base import Graph
from moma.backbones.registry import get_backbone
from moma.errors import MomaError
from moma.modules.store import LoadedModule


def test_the_leakage_rule() -> None:
    assert same_task("castelli_perovskites:e_form", "castelli_perovskites:dir_gap")
    assert not same_task("jarvis_2d_eform", "jarvis_2d_exfoliation")
    assert leaks("jarvis_2d_eform", ("jarvis_2d_eform",))
    assert leaks("mp_eform", (None, "x", "mp_eform:e"))
    assert not leaks("mp_eform", (None,))


def test_candidates_exclude_the_task_and_listed_tasks(tmp_path: Path, moe_root: Path,
                                                      family: list[LoadedModule]) -> None:
    for name in ("jarvis_eform", "mp_eform", "mp_bandgap"):
        shutil.copytree(moe_root / name, tmp_path / "hub" / name)
    for module in family:
        shutil.copytree(module.path, tmp_path / "hub" / module.path.name)
    all_found = screen_candidates([tmp_path / "hub"], backbone="cgcnn", kind="full")
    assert len(all_found.modules) == 5 and not all_found.skipped
    names = [m.card.name for m in all_found.modules]
    assert names == sorted(names)
    # Both family modules are castelli_perovskites targets: composing for that task drops both.
    kept = screen_candidates([tmp_path / "hub"], backbone="cgcnn", kind="full",
                             exclude_task="castelli_perovskites:bandgap")
    assert {m.card.name for m in kept.modules} == {"jarvis_eform", "mp_eform", "mp_bandgap"}
    assert [s["reason"] for s in kept.skipped] == ["same task", "same task"]
    kept = screen_candidates([tmp_path / "hub", tmp_path / "hub"], backbone="cgcnn",
                             kind="full", exclude_tasks=["mp_eform", "mp_bandgap"])
    assert len(kept.modules) == 3  # listed twice, loaded once
    assert sorted(s["reason"] for s in kept.skipped) == ["duplicate"] * 5 + ["same task"] * 2
    with pytest.raises(MomaError, match="no usable adapter cgcnn modules"):
        screen_candidates([tmp_path / "hub"], backbone="cgcnn", kind="adapter")


def test_selection_weighs_formation_energy_modules_over_a_band_gap_module(
        moe_modules: list[LoadedModule], train_set: tuple[list[Graph], np.ndarray]) -> None:
    graphs, y = train_set
    selection = select(get_backbone("cgcnn"), moe_modules, graphs, y, k=5)
    proxy = dict(zip(selection.names, selection.proxy_mae, strict=True))
    assert proxy["jarvis_eform"] < proxy["mp_bandgap"]
    assert selection.weights.sum() == pytest.approx(1.0) and np.all(selection.weights >= -1e-9)
    assert selection.ensemble_proxy_mae <= min(proxy.values()) + 1e-9
    assert set(selection.timings) >= {"encode_s", "knn_s", "qp_s"}
