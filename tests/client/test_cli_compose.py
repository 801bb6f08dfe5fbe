"""``moma-client compose`` end to end on real modules and a real task (small and fast)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from moma.data.readers import load_dataset
from moma.errors import ExitCode
from moma.modules.store import load_module
from moma.paths import downstream_task_path, shared_dir
from moma_client.cli.app import main

TASK = str(downstream_task_path("jarvis_2d_eform"))
CASTELLI = str(shared_dir() / "data" / "hub" / "castelli_perovskites.json.gz")
FAST = ["--epochs", "2", "--train-size", "60", "--patience", "5"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory, moe18: Path) -> dict[str, Path]:
    """Two module folders: four imported MoE-(18) CGCNNs (separate bases), and a shared-base
    family of two castelli modules fine-tuned from the imported mp_eform, plus one module
    trained on the downstream task itself (which compose must never offer)."""
    root = tmp_path_factory.mktemp("hubs")
    with pytest.raises(SystemExit) as e:
        main(["modules", "import-moe18", str(moe18), "--out", str(root / "all18")])
    assert e.value.code == 0
    moe = root / "moe"
    for name in ("jarvis_eform", "mp_eform", "mp_bandgap", "castelli_eform"):
        shutil.copytree(root / "all18" / name, moe / name)
    family = root / "family"
    for target in ("e_form", "dir_gap"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--data", CASTELLI, "--target", target, "--init",
                  str(root / "all18" / "mp_eform"), "--epochs", "1", "--max-train", "64",
                  "--lr", "5e-4", "--out", str(family / target)])
        assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", TASK, "--init", str(root / "all18" / "mp_eform"), "--epochs",
              "1", "--max-train", "32", "--out", str(family / "same_task")])
    assert e.value.code == 0
    return {"moe": moe, "family": family, "mp_eform": root / "all18" / "mp_eform"}


def test_amc_on_separate_bases_reports_weights_and_picks_top1(
        hubs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "amc"
    code, stdout, _ = run(["compose", "--data", TASK, "--modules", str(hubs["moe"]), "--out",
                           str(out), *FAST, "--json"], capsys)
    assert code == 0
    report = json.loads(stdout)
    assert report == json.loads((out / "report.json").read_text())
    assert report["strategy"] == "amc" and report["merge"] == "top1"
    assert "trained from different bases" in report["merge_reason"]
    weights = np.array([c["weight"] for c in report["candidates"]])
    assert len(weights) == 4 and np.all(weights >= -1e-9) and abs(weights.sum() - 1) < 1e-6
    proxies = {c["name"]: c["proxy_mae"] for c in report["candidates"]}
    # Formation-energy modules place 2D formation energies better than a band-gap module.
    assert proxies["jarvis_eform"] < proxies["mp_bandgap"]
    assert report["train_size"] == 60 and report["n_test"] == 94
    m = report["metrics"]
    assert all(np.isfinite(m[k]) for k in ("test_mae", "val_mae", "test_mae_train_mean"))
    assert report["ensemble_proxy_mae"] <= min(proxies.values()) + 1e-9
    for stage in ("select_encode_s", "select_knn_s", "select_qp_s", "fine_tune_s"):
        assert report["timings"][stage] >= 0
    for figure in ("weights.png", "parity.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    composed = load_module(out / "module")
    top = max(report["candidates"], key=lambda c: c["weight"])
    assert composed.card.parents[0]["module_id"] == top["module_id"]
    assert composed.card.base_sha256 == top["module_id"]
    assert composed.card.metrics["test_mae"] == pytest.approx(m["test_mae"])


def test_shared_base_family_averages_and_excludes_the_task_itself(
        hubs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "avg"
    code, stdout, _ = run(["compose", "--data", TASK, "--modules", str(hubs["family"]),
                           "--strategy", "all-average", "--out", str(out), *FAST, "--json"],
                          capsys)
    assert code == 0
    report = json.loads(stdout)
    names = {c["name"] for c in report["candidates"]}
    assert len(names) == 2 and not any("jarvis_2d_eform" in n for n in names)
    assert report["merge"] == "average"
    assert [c["weight"] for c in report["composed_from"]] == [0.5, 0.5]
    card = load_module(out / "module").card
    assert card.base_sha256 == load_module(hubs["mp_eform"]).module_id
    assert len(card.parents) == 2


def test_average_across_bases_is_refused(hubs: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "refused"
    code, _, err = run(["compose", "--data", TASK, "--modules", str(hubs["moe"]), "--strategy",
                        "all-average", "--merge", "average", "--out", str(out), *FAST], capsys)
    assert code == ExitCode.INCOMPATIBLE
    assert "parameter averaging needs one shared base" in " ".join(err.split())
    assert not (out / "report.json").exists()


def test_ensemble_stores_parts_and_weights(hubs: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ens"
    code, stdout, _ = run(["compose", "--data", TASK, "--modules", str(hubs["moe"]),
                           "--strategy", "all-average", "--merge", "ensemble", "--out", str(out),
                           "--epochs", "1", "--train-size", "40", "--json"], capsys)
    assert code == 0
    report = json.loads(stdout)
    ensemble = json.loads((out / "module" / "ensemble.json").read_text())
    assert len(ensemble["parts"]) == 4
    assert sum(p["weight"] for p in ensemble["parts"]) == pytest.approx(1.0)
    for part in ensemble["parts"]:
        assert load_module(Path(part["path"])).module_id == part["module_id"]
    assert len(report["epochs_run"]) == 4
    cif = tmp_path / "x.cif"
    load_dataset(TASK).records[0].structure.to(filename=str(cif))
    code, stdout, _ = run(["predict", "--module", str(out / "module"), str(cif), "--json"],
                          capsys)
    assert code == 0
    payload = json.loads(stdout)
    assert len(payload["module_ids"]) == 4 and np.isfinite(payload["predictions"][0]["prediction"])


@pytest.mark.parametrize("strategy", ["backbone-ft", "scratch", "random", "select-average"])
def test_baselines_and_ablations_run(strategy: str, hubs: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / strategy
    code, stdout, _ = run(["compose", "--data", TASK, "--modules", str(hubs["moe"]),
                           "--strategy", strategy, "--base-module", str(hubs["mp_eform"]),
                           "--out", str(out), "--epochs", "1", "--train-size", "40", "--json"],
                          capsys)
    assert code == 0, stdout
    report = json.loads(stdout)
    assert report["strategy"] == strategy and np.isfinite(report["metrics"]["test_mae"])
    if strategy == "backbone-ft":
        card = load_module(out / "module").card
        assert card.base_sha256 == load_module(hubs["mp_eform"]).module_id
    if strategy in ("random", "select-average"):
        assert report["composed_from"]
        assert len({c["weight"] for c in report["composed_from"]}) == 1


def test_a_train_size_larger_than_the_split_says_it_is_capped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 6 of the hardening issue: asking for more training structures than the split
    holds trains on the whole split and says so (stderr and report), never silently."""
    records = load_dataset(TASK).records[:60]  # a small real dataset keeps this fast
    data = tmp_path / "small.json"
    data.write_text(json.dumps([{"id": r.id, "target": r.target,
                                 "structure": r.structure.as_dict()} for r in records]))
    out = tmp_path / "capped"
    code, stdout, err = run(["compose", "--data", str(data), "--strategy", "scratch",
                             "--split", "random", "--train-size", "100000", "--epochs", "1",
                             "--out", str(out)], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    n_train = report["train_size"]
    assert 0 < n_train < len(records) and report["train_size_requested"] == 100000
    assert (f"note: --train-size 100000 is larger than the training split ({n_train} "
            f"structures): capped at {n_train}") in " ".join(err.split())
    assert report["train_size_note"] in " ".join(err.split()) and "test MAE" in stdout
