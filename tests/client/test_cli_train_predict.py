"""``moma-client train`` / ``predict`` / ``modules`` end to end, and their answers to bad input."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from moma.errors import ExitCode
from moma.modules.store import load_module
from moma.paths import downstream_task_path
from moma_client.cli.app import main
from tests.conftest import to_structure

TASK = str(downstream_task_path("jarvis_2d_eform"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def small_dataset(raw: dict[str, Any], n: int = 24) -> dict[str, Any]:
    records = copy.deepcopy(raw["records"][:n])
    order = list(range(n))
    return {"task": "tiny_eform", "target": raw["target"], "unit": raw["unit"],
            "records": records,
            "splits": {"seed0": {"train": order[:16], "val": order[16:20], "test": order[20:]}}}


def write(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(payload))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "module"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", TASK, "--backbone", "cgcnn", "--kind", "full", "--epochs", "3",
              "--max-train", "64", "--seed", "3", "--out", str(out)])
    assert exit_info.value.code == 0
    return out


def test_train_writes_module_and_card_with_metrics(trained: Path) -> None:
    card = json.loads((trained / "card.json").read_text())
    assert card["task"] == "jarvis_2d_eform" and card["kind"] == "full"
    assert card["dataset_size"] == {"train": 64, "val": 94, "test": 94}
    assert card["split"] == "seed0" and card["hyperparameters"]["seed"] == 3
    for key in ("val_mae", "test_mae", "test_mae_train_mean", "test_mae_train_median"):
        assert np.isfinite(card["metrics"][key])
    assert 0.55 < card["metrics"]["test_mae_train_mean"] < 0.8  # 0.67 on the full train split
    loaded = load_module(trained)
    assert loaded.module_id == card["module_id"]


def test_predict_matches_the_module_in_target_units(trained: Path, tmp_path: Path,
                                                    jarvis_2d_eform: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for record in jarvis_2d_eform["records"][:3]:
        path = tmp_path / f"{record['id']}.cif"
        to_structure(record).to(filename=str(path))
        files.append(str(path))
    poscar = tmp_path / "POSCAR"
    to_structure(jarvis_2d_eform["records"][3]).to(filename=str(poscar), fmt="poscar")
    code, out, _ = run(["predict", "--module", str(trained), *files, str(poscar), "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert payload["unit"] == "formation energy, eV/atom" or payload["unit"]
    values = [row["prediction"] for row in payload["predictions"]]
    assert len(values) == 4 and all(np.isfinite(values))
    card = json.loads((trained / "card.json").read_text())
    # Predictions are de-standardized: within a few train standard deviations of the mean.
    mean, std = card["normalizer"]["mean"], card["normalizer"]["std"]
    assert all(abs(v - mean) < 5 * std for v in values)
    assert len(set(np.round(values, 6))) > 1


def test_adapter_training_stores_only_adapters_and_head(tmp_path: Path, moe18: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    modules = tmp_path / "moe18"
    assert run(["modules", "import-moe18", str(moe18), "--out", str(modules)], capsys)[0] == 0
    out = tmp_path / "adapter"
    code, stdout, _ = run(["train", "--data", TASK, "--kind", "adapter", "--init",
                           str(modules / "mp_eform"), "--epochs", "2", "--max-train", "48",
                           "--out", str(out), "--json"], capsys)
    assert code == 0
    card = json.loads(stdout)
    base = load_module(modules / "mp_eform")
    assert card["kind"] == "adapter" and card["base_sha256"] == base.module_id
    keys = set(load_module(out).state)
    assert keys and all(k.startswith(("adapters.", "conv_to_fc.", "fc_out.")) for k in keys)
    code, stdout, _ = run(["modules", "list", str(tmp_path), "--json"], capsys)
    assert code == 0 and len(json.loads(stdout)) == 19


# --- bad data: one-line error naming the record and the fix, exit 3, nothing written ---------

def _corrupt(raw: dict[str, Any], how: str) -> dict[str, Any]:
    data = small_dataset(raw)
    rec = data["records"][5]
    if how == "unparseable":
        rec["structure"]["frac_coords"] = rec["structure"]["frac_coords"][:-1]
    elif how == "nan":
        rec["target"] = float("nan")
    elif how == "inf":
        rec["target"] = float("inf")
    elif how == "element":
        rec["structure"]["species"][0] = "Xx"
    elif how == "duplicate":
        rec["id"] = data["records"][4]["id"]
    elif how == "split":
        data["splits"]["seed0"]["test"].append(999)
    elif how == "lonely":
        rec["structure"] = {"lattice": [[30, 0, 0], [0, 30, 0], [0, 0, 30]], "species": ["Fe"],
                            "frac_coords": [[0, 0, 0]]}
    return data


@pytest.mark.parametrize(("how", "expected"), [
    ("unparseable", r"record '.*'"),
    ("nan", r"record '.*'.*(NaN|nan|not finite)"),
    ("inf", r"record '.*'.*(inf|not finite)"),
    ("element", r"record '.*'.*Xx"),
    ("duplicate", r"duplicate"),
    ("split", r"999"),
    ("lonely", r"no neighbour within 8.0 Å.*--skip-invalid"),
])
def test_bad_data_is_refused_and_nothing_written(how: str, expected: str, tmp_path: Path,
                                                 jarvis_2d_eform: dict[str, Any],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path / "data.json", _corrupt(jarvis_2d_eform, how))
    out = tmp_path / "out"
    code, _, err = run(["train", "--data", str(data), "--epochs", "1", "--out", str(out)], capsys)
    assert code == ExitCode.BAD_DATA
    message = " ".join(err.split())
    assert "error:" in message
    message = message[message.index("error:"):]
    assert re.search(expected, message), message
    assert not out.exists()


def test_missing_and_empty_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(["train", "--data", str(tmp_path / "nope.json"), "--out", str(out)], capsys)
    assert code == ExitCode.BAD_DATA and "nope.json" in err and not out.exists()
    empty = tmp_path / "empty.json.gz"
    with gzip.open(empty, "wb"):
        pass
    code, _, err = run(["train", "--data", str(empty), "--out", str(out)], capsys)
    assert code == ExitCode.BAD_DATA and "empty" in err.lower() and not out.exists()


def test_skip_invalid_trains_on_the_rest(tmp_path: Path, jarvis_2d_eform: dict[str, Any],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path / "data.json", _corrupt(jarvis_2d_eform, "lonely"))
    out = tmp_path / "out"
    code, stdout, _ = run(["train", "--data", str(data), "--epochs", "1", "--skip-invalid",
                             "--out", str(out), "--json"], capsys)
    assert code == 0
    card = json.loads(stdout)
    assert card["extra"]["records_rejected"] == 1
    assert sum(card["dataset_size"].values()) == 23


# --- bad modules: exit 4, the file named, nothing predicted ----------------------------------

def _module_variants(trained: Path, tmp_path: Path) -> dict[str, Path]:
    variants = {}
    raw = (trained / "module.safetensors").read_bytes()
    card = (trained / "card.json").read_text()
    state = load_module(trained).state

    def make(name: str, data: bytes) -> None:
        # The card names these very bytes, so the checks behind the id check are reached.
        folder = tmp_path / name
        folder.mkdir()
        (folder / "module.safetensors").write_bytes(data)
        fields = json.loads(card)
        fields["module_id"] = hashlib.sha256(data).hexdigest()
        (folder / "card.json").write_text(json.dumps(fields))
        variants[name] = folder

    make("pickle", pickle.dumps({"embedding.weight": [1.0, 2.0]}))
    make("truncated", raw[: len(raw) // 2])
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"][1] += 4096
    text = json.dumps(header).encode()
    make("lying", struct.pack("<Q", len(text)) + text + raw[8 + header_len:])
    for name, change in [
        ("shape", lambda s: s.__setitem__("embedding.weight", torch.zeros(64, 91))),
        ("dtype", lambda s: s.__setitem__("embedding.weight", s["embedding.weight"].double())),
        ("nan", lambda s: s["fc_out.weight"].__setitem__((0, 0), float("nan"))),
        ("huge", lambda s: [v.fill_(1e30) for v in s.values() if v.is_floating_point()]),
    ]:
        bad = {k: v.clone() for k, v in state.items()}
        change(bad)
        path = tmp_path / f"{name}.st"
        save_file(bad, str(path))
        make(name, path.read_bytes())
    return variants


def test_bad_modules_are_refused(trained: Path, tmp_path: Path, jarvis_2d_eform: dict[str, Any],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cif = tmp_path / "x.cif"
    to_structure(jarvis_2d_eform["records"][0]).to(filename=str(cif))
    expectations = {"pickle": "pickle", "truncated": "", "lying": "", "shape": "shape",
                    "dtype": "dtype", "nan": "finite", "huge": "magnitude above 10000"}
    for name, folder in _module_variants(trained, tmp_path).items():
        code, out, err = run(["predict", "--module", str(folder), str(cif)], capsys)
        assert code == ExitCode.BAD_MODULE, (name, err)
        assert "module.safetensors" in err and expectations[name] in err.lower(), (name, err)
        assert out == ""
        code, _, err = run(["train", "--data", TASK, "--init", str(folder), "--epochs", "1",
                            "--out", str(tmp_path / f"out-{name}")], capsys)
        assert code == ExitCode.BAD_MODULE, (name, err)
        assert not (tmp_path / f"out-{name}").exists()


def test_non_finite_predictions_are_an_error(trained: Path, tmp_path: Path,
                                             jarvis_2d_eform: dict[str, Any],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Weights that pass every load check (finite, small) but compute NaN: a negative BatchNorm
    running variance. ``predict`` must fail naming the structures, never print ``nan``."""
    state = {k: v.clone() for k, v in load_module(trained).state.items()}
    for key in [k for k in state if k.endswith("running_var")]:
        state[key].fill_(-1.0)
    folder = tmp_path / "negative-var"
    folder.mkdir()
    save_file(state, str(folder / "module.safetensors"))
    fields = json.loads((trained / "card.json").read_text())
    fields["module_id"] = hashlib.sha256((folder / "module.safetensors").read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps(fields))
    cif = tmp_path / "y.cif"
    to_structure(jarvis_2d_eform["records"][1]).to(filename=str(cif))
    for extra in ([], ["--json"]):
        code, out, err = run(["predict", "--module", str(folder), str(cif), *extra], capsys)
        assert code == ExitCode.BAD_MODULE, err
        assert "non-finite value" in err and "1 of 1 structure" in err, err
        assert out == "" and "nan" not in out.lower()
