"""The compose entry point: arguments checked before any data is read; hooks; leakage rule."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest

from moma.api.compose import ComposeHooks, ComposeRequest, run, validate
from moma.errors import MomaError
from moma.modules.store import load_module, save_module
from moma.paths import downstream_task_path
from moma.training.loop import TrainConfig

MISSING = Path("/nonexistent/data.json.gz")  # reading it would fail with another message


@pytest.mark.parametrize(("changes", "message"), [
    ({"strategy": "amx"}, "unknown strategy 'amx'"),
    ({"merge": "mean"}, "unknown merge 'mean'"),
    ({"head": "old"}, "unknown head 'old'"),
    ({"knn_layer": "deep"}, "unknown kNN layer 'deep'"),
    ({"backbone": "schnet"}, "unknown backbone 'schnet'"),
    ({"train": TrainConfig(device="cuda")}, "no CUDA device"),
    ({"strategy": "backbone-ft"}, "needs the base module"),
    ({"strategy": "scratch", "kind": "adapter"}, "use --kind full"),
    ({"candidates": []}, "needs candidate modules"),
    ({"train_size": 1}, "at least 2"),
])
def test_bad_arguments_fail_fast_before_the_data_is_read(
        changes: dict[str, object], message: str, tmp_path: Path) -> None:
    fields: dict[str, object] = {"data": MISSING, "out": tmp_path / "out",
                                 "candidates": [tmp_path], **changes}
    request = ComposeRequest(**fields)  # type: ignore[arg-type]
    tick = time.perf_counter()
    with pytest.raises(MomaError, match=message):
        run(request)
    assert time.perf_counter() - tick < 5.0
    assert not (tmp_path / "out").exists()


def test_chgnet_backbone_ft_needs_no_base_module(tmp_path: Path) -> None:
    assert validate(ComposeRequest(data=MISSING, out=tmp_path, strategy="backbone-ft",
                                   backbone="chgnet")).name == "backbone-ft"


def test_hub_candidates_arrive_after_the_task_is_known_and_obey_the_leakage_rule(
        tmp_path: Path, moe_root: Path) -> None:
    """``more_candidates`` is asked with the dataset's task name; a module trained on that task
    (here: an imported module relabelled as trained on jarvis_2d_eform) is never composed, nor
    one of the tasks the caller excludes (mp_bandgap)."""
    local = tmp_path / "local"
    for name in ("jarvis_eform", "mp_bandgap"):
        shutil.copytree(moe_root / name, local / name)
    remote = tmp_path / "remote"
    shutil.copytree(moe_root / "mp_eform", remote / "mp_eform")
    same = load_module(moe_root / "castelli_eform")
    save_module(remote / "same_task", same.state,
                dataclasses.replace(same.card, name="same-task", task="jarvis_2d_eform:e_form",
                                    module_id=""))
    seen: list[str] = []
    datasets: list[str] = []

    def more(task: str) -> list[Path]:
        seen.append(task)
        return [remote]

    request = ComposeRequest(
        data=downstream_task_path("jarvis_2d_eform"), out=tmp_path / "out",
        candidates=[local], strategy="all-average", merge="ensemble", train_size=24,
        exclude_tasks=["mp_bandgap"],
        train=TrainConfig(epochs=1, batch_size=16, lr=8e-5, head_lr_factor=10.0, patience=1))
    result = run(request, ComposeHooks(on_dataset=lambda d: datasets.append(d.name),
                                       more_candidates=more))
    assert seen == ["jarvis_2d_eform"] and datasets == ["jarvis_2d_eform"]
    assert {c["name"] for c in result.report["candidates"]} == {"jarvis_eform", "mp_eform"}
    assert result.weights == {"jarvis_eform": 0.5, "mp_eform": 0.5}
    assert (result.out / "report.json").is_file() and result.module_path.is_dir()
    table = result.model().predict(downstream_task_path("jarvis_2d_eform"))
    assert len(table) == 633
