"""Importing the 18 MoE-(18) CGCNN models: real files in, loadable modules out, all or nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from moma.backbones.cgcnn.backbone import CGCNNBackbone
from moma.errors import ModuleFormatError
from moma.modules.card import ModuleCard
from moma.modules.moe18 import import_moe18
from moma.modules.store import MODULE_FILE, list_modules, load_module, sha256_file
from tests.conftest import to_structure


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory,
             moe18: Path) -> tuple[Path, list[ModuleCard]]:
    out = tmp_path_factory.mktemp("hub") / "moe18"
    out.mkdir()  # an existing empty folder is accepted
    return out, import_moe18(moe18, out)


def copy_source(moe18: Path, dest: Path) -> Path:
    dest.mkdir()
    for path in moe18.iterdir():
        shutil.copyfile(path, dest / path.name)  # writable copies
    return dest


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_all_18_import_and_load_strict(imported: tuple[Path, list[ModuleCard]],
                                       moe18_manifest: dict[str, Any]) -> None:
    out, cards = imported
    assert [c.name for c in cards] == sorted(moe18_manifest) and len(cards) == 18
    assert sorted(p.name for p in out.iterdir()) == sorted(moe18_manifest)
    assert [c for _, c in list_modules(out)] == cards
    backbone = CGCNNBackbone()
    for card in cards:
        entry = moe18_manifest[card.task]
        loaded = load_module(out / card.task)
        assert loaded.module_id == card.module_id == card.base_sha256 == entry["sha256"]
        model = backbone.build()
        result = model.load_state_dict(loaded.state, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        assert card.property == entry["property"]
        assert card.normalizer.mean == entry["normalizer"]["mean"]
        assert card.normalizer.std == entry["normalizer"]["std"]
        assert card.metrics == {"val_mae": entry["best_val_mae"]}
        assert card.hyperparameters == entry["hyperparameters"]
        assert card.extra["source_file"] == entry["source_file"]


def test_castelli_eform_module(imported: tuple[Path, list[ModuleCard]], moe18: Path,
                               moe18_manifest: dict[str, Any]) -> None:
    out, _ = imported
    folder = out / "castelli_eform"
    card = load_module(folder).card
    assert (sha256_file(folder / MODULE_FILE) == card.module_id
            == moe18_manifest["castelli_eform"]["sha256"]
            == "9e8bf50830aa2bc6613f90baab7a228bf2c593a909a0f30fe49df28bfbb7f6c6")
    source_bytes = (moe18 / "castelli_eform.safetensors").read_bytes()
    assert (folder / MODULE_FILE).read_bytes() == source_bytes
    assert (card.backbone, card.backbone_version, card.kind) == ("cgcnn", "1", "full")
    assert (card.task, card.unit, card.split, card.dataset_size) == ("castelli_eform", "eV",
                                                                     None, {})
    assert card.featurizer == CGCNNBackbone().featurizer().config()
    assert card.extra["source"] == "moe18-cgcnn"
    assert ModuleCard.from_json(json.loads((folder / "card.json").read_text())) == card
    units = {c.task: c.unit for _, c in list_modules(out)}
    assert units["mp_eform"] == "eV/atom" and units["n_e_cond"] == "unknown"


def test_imported_module_and_card_predict_castelli(imported: tuple[Path, list[ModuleCard]],
                                                   castelli: dict[str, Any]) -> None:
    """Weights and the card's normalizer together reproduce real formation energies."""
    out, _ = imported
    loaded = load_module(out / "castelli_eform")
    backbone = CGCNNBackbone()
    model = backbone.build()
    model.load_state_dict(loaded.state, strict=True)
    model.eval()
    records = castelli["records"][::40]
    featurizer = backbone.featurizer()
    graphs = [featurizer.featurize(to_structure(r), r["id"]) for r in records]
    with torch.no_grad():
        z = model(backbone.collate(graphs)).numpy()
    pred = loaded.card.normalizer.denormalize(z)
    y = np.array([r["e_form"] for r in records])
    mae = float(np.mean(np.abs(pred - y)))
    assert len(y) == 190
    print(f"castelli_eform module on {len(y)} castelli perovskites: MAE {mae:.4f} eV")
    assert mae < 0.1, mae
    assert mae < 0.2 * float(np.mean(np.abs(y - np.median(y))))


def test_corrupted_source_file_writes_nothing(tmp_path: Path, moe18: Path) -> None:
    src = copy_source(moe18, tmp_path / "src")
    target = src / "mp_gvrh.safetensors"
    data = bytearray(target.read_bytes())
    data[-7] ^= 0xFF
    target.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(ModuleFormatError) as info:
        import_moe18(src, out)
    message = str(info.value)
    assert message.startswith(str(target))
    assert "sha256 is" in message and "manifest.json says" in message
    assert_nothing_written(out)


def test_nan_weights_with_matching_sha_write_nothing(tmp_path: Path, moe18: Path) -> None:
    """A file whose manifest hash was updated still faces the full checks."""
    src = copy_source(moe18, tmp_path / "src")
    target = src / "p_th_cond.safetensors"
    state = safetensors.torch.load(target.read_bytes())
    state["convs.1.bn2.weight"][3] = float("nan")
    target.write_bytes(safetensors.torch.save(state))
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["p_th_cond"]["sha256"] = sha256_file(target)
    (src / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    with pytest.raises(ModuleFormatError, match=r"non-finite .*'convs\.1\.bn2\.weight' \(1\)"):
        import_moe18(src, out)
    assert_nothing_written(out)


def test_refusals_before_reading(tmp_path: Path, moe18: Path) -> None:
    out = tmp_path / "out"
    (out / "x").mkdir(parents=True)
    with pytest.raises(ModuleFormatError, match="already exists and is not an empty folder"):
        import_moe18(moe18, out)
    assert [p.name for p in out.iterdir()] == ["x"]
    with pytest.raises(ModuleFormatError, match=r"manifest\.json: not found"):
        import_moe18(tmp_path, tmp_path / "out2")
    src = copy_source(moe18, tmp_path / "src")
    (src / "atom_init.json").write_text('{"1": [0.0]}')
    with pytest.raises(ModuleFormatError, match="differs from the atom table"):
        import_moe18(src, tmp_path / "out3")
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["mp_eform"]["file"] = "../elsewhere.safetensors"
    (src / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModuleFormatError, match="task 'mp_eform': 'file' is"):
        import_moe18(src, tmp_path / "out4")
    assert_nothing_written(tmp_path / "out2")
    assert_nothing_written(tmp_path / "out3")
    assert_nothing_written(tmp_path / "out4")
