"""Trust in compose, end to end: nothing skipped in silence, data overlap caught, the guard's
choice consistent with its numbers, intervals and ranges in the report and in predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from moma.modules.store import list_modules
from moma.paths import downstream_task_path, shared_dir
from moma_client.cli.app import main
from tests.conftest import load_raw, to_structure

TASK = "jarvis_2d_eform"
TASK_FILE = str(downstream_task_path(TASK))
SMALL = str(downstream_task_path("jarvis_2d_gap_tbmbj"))
CASTELLI = str(shared_dir() / "data" / "hub" / "castelli_perovskites.json.gz")
FAST = ["--epochs", "2", "--train-size", "60", "--patience", "5"]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr().out if capsys is not None else ""
    return int(exit_info.value.code or 0), out


def _train(argv: list[str]) -> None:
    code, _ = cli(["train", *argv])
    assert code == 0


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, moe18: Path) -> dict[str, Path]:
    """One folder with two backbones and both kinds: CGCNN full and adapter modules from the
    imported mp_eform, a CHGNet adapter, a module of the task itself, a duplicate copy, and a
    module that publishes its data fingerprint and trained on part of the task's test split."""
    root = tmp_path_factory.mktemp("mixed")
    code, _ = cli(["modules", "import-moe18", str(moe18), "--out", str(root / "all18")])
    assert code == 0
    base = root / "all18" / "mp_eform"
    folder = root / "hub"
    shutil.copytree(base, root / "bases" / "mp_eform")
    common = ["--init", str(base), "--epochs", "1", "--lr", "5e-4"]
    _train(["--data", CASTELLI, "--target", "e_form", *common, "--max-train", "64",
            "--out", str(folder / "castelli_eform")])
    _train(["--data", CASTELLI, "--target", "dir_gap", *common, "--max-train", "64",
            "--kind", "adapter", "--out", str(folder / "castelli_gap_adapter")])
    _train(["--data", SMALL, "--backbone", "chgnet", "--kind", "adapter", "--epochs", "1",
            "--max-train", "24", "--out", str(folder / "chgnet_gap_adapter")])
    _train(["--data", TASK_FILE, *common, "--max-train", "32", "--out", str(folder / "same")])
    shutil.copytree(folder / "castelli_eform", folder / "copy_of_castelli_eform")
    # a lab trained on 40 training and 30 test crystals of the task, under another task name
    raw = load_raw(TASK)
    split = raw["splits"]["seed0"]
    leaked = [raw["records"][i] for i in split["train"][:40] + split["test"][:30]]
    leaky_file = root / "leaky.json"
    leaky_file.write_text(json.dumps(leaked))
    _train(["--data", str(leaky_file), "--task", "lab_b_formation", *common,
            "--publish-data-fingerprint", "--out", str(folder / "leaky")])
    return {"hub": folder, "bases": root / "bases"}


def _compose(mixed: dict[str, Path], out: Path, capsys: pytest.CaptureFixture[str],
             *extra: str) -> dict[str, Any]:
    code, stdout = cli(["compose", "--data", TASK_FILE, "--modules", str(mixed["hub"]),
                        "--modules", str(mixed["bases"]), "--out", str(out), *FAST, *extra,
                        "--json"], capsys)
    assert code == 0, stdout
    report: dict[str, Any] = json.loads(stdout)
    assert report == json.loads((out / "report.json").read_text())
    return report


def test_every_module_is_a_candidate_or_skipped_with_its_reason(
        mixed: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _compose(mixed, tmp_path / "c", capsys)
    everything = [path for folder in (mixed["hub"], mixed["bases"])
                  for path, _ in list_modules(folder)]
    skipped = {Path(e["path"]).name: e for e in report["skipped"]}
    used = {c["name"] for c in report["candidates"]}
    assert len(skipped) + len(used) == len(everything)
    assert skipped["castelli_gap_adapter"]["reason"] == "other kind"
    assert skipped["chgnet_gap_adapter"]["reason"] == "other backbone"
    assert skipped["same"]["reason"] == "same task"
    duplicate = "copy_of_castelli_eform" if "copy_of_castelli_eform" in skipped \
        else "castelli_eform"
    assert skipped[duplicate]["reason"] == "duplicate"
    assert skipped["leaky"]["reason"] == "overlapping data"
    # it trained (or early-stopped) on the 85 % of its 70 records its random split gave it, so
    # on most of the 30 test crystals, and on none of the task's validation crystals
    matches = int(skipped["leaky"]["detail"].split()[0])
    assert 15 <= matches <= 30 and skipped["leaky"]["detail"].endswith("it saw them)")
    assert "mp_eform" in used


def test_adapter_compose_lists_the_full_modules_as_other_kind(
        mixed: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _compose(mixed, tmp_path / "a", capsys, "--kind", "adapter", "--no-guard")
    reasons = {Path(e["path"]).name: e["reason"] for e in report["skipped"]}
    assert [c["name"] for c in report["candidates"]] == [
        "castelli_perovskites:dir_gap-cgcnn-adapter-seed0"]
    assert reasons["castelli_eform"] == "other kind" and reasons["leaky"] == "other kind"
    assert reasons["chgnet_gap_adapter"] == "other backbone"
    assert report["guard"] == {"ran": False, "why_not": "--no-guard: the composition was not "
                                                        "compared with its baseline"}


def test_guard_keeps_the_lower_validation_mae_and_predict_shows_uncertainty(
        mixed: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g"
    report = _compose(mixed, out, capsys, "--strategy", "all-average")
    guard = report["guard"]
    assert guard["ran"] and guard["baseline"].startswith("the fine-tuned base")
    lower = min(guard["composed_val_mae"], guard["baseline_val_mae"])
    assert guard["kept"] == ("baseline" if guard["baseline_val_mae"] < guard["composed_val_mae"]
                             else "composed")
    # the guard chose on the selection half of the validation split
    assert report["metrics"]["val_mae_selection"] == pytest.approx(lower)
    assert f"guard: kept {guard['baseline'] if guard['kept'] == 'baseline' else ''}" \
        in guard["sentence"]
    unc = report["uncertainty"]
    assert unc["conformal"]["coverage"] == 0.9
    # the interval is calibrated on the other half, which no choice saw
    roles = unc["validation_roles"]
    assert unc["conformal"]["n_calibration"] == roles["n_calibration"] == report["n_val"] // 2
    assert roles["n_selection"] + roles["n_calibration"] == report["n_val"]
    assert unc["conformal"]["held_out"] and roles["held_out"]
    assert 0.0 <= unc["test_coverage"] <= 1.0
    assert report["metrics"]["test_coverage"] == unc["test_coverage"]
    curve = json.loads((out / "module" / "learning_curve.json").read_text())
    assert [c["label"] for c in curve["curves"]][-1] == f"guard: {guard['baseline']}"
    cif = tmp_path / "x.cif"
    to_structure(load_raw(TASK)["records"][0]).to(filename=str(cif))
    csv_path = tmp_path / "p.csv"
    code, stdout = cli(["predict", "--module", str(out / "module"), str(cif), "--csv",
                        str(csv_path), "--json"], capsys)
    assert code == 0
    row = json.loads(stdout)["predictions"][0]
    assert row["upper"] - row["prediction"] == pytest.approx(unc["conformal"]["half_width"])
    assert row["domain_score"] >= 0 and isinstance(row["in_domain"], bool)
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["id", "prediction", "unit", "lower", "upper"]
    assert np.isfinite(float(csv_path.read_text().splitlines()[1].split(",")[1]))
