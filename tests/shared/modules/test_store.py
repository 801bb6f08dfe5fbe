"""Module folders: schemas from the real models, save/load round trips for full and adapter
modules, and every bad module refused with nothing written or loaded."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import Tensor

from moma.backbones.adapters import adapter_state_keys, insert_adapters
from moma.backbones.cgcnn.backbone import CGCNNBackbone
from moma.errors import ModuleFormatError
from moma.modules import store
from moma.modules.card import ModuleCard, TargetNormalizer
from moma.modules.store import (
    CARD_FILE,
    MODULE_FILE,
    list_modules,
    load_card,
    load_module,
    module_schema,
    save_module,
    sha256_file,
    sha256_state,
)
from moma.paths import moe18_dir

BACKBONE = CGCNNBackbone()


def make_card(**changes: Any) -> ModuleCard:
    fields: dict[str, Any] = dict(
        name="toy", backbone="cgcnn", backbone_version=BACKBONE.version, base_sha256="ab" * 32,
        kind="full", task="toy_task", property="e_form", unit="eV/atom",
        normalizer=TargetNormalizer(0.1, 2.0), dataset_size={"train": 10, "val": 2, "test": 2},
        split="seed0", metrics={"val_mae": 0.5}, hyperparameters={"lr": 1e-3},
        featurizer=BACKBONE.featurizer().config(), software_version="0.1.0",
        created="2025-01-31T12:00:00+00:00",
    )
    fields.update(changes)
    return ModuleCard(**fields)


def full_state(seed: int = 0) -> dict[str, Tensor]:
    torch.manual_seed(seed)
    return BACKBONE.build().state_dict()


def adapter_state(seed: int = 0) -> dict[str, Tensor]:
    torch.manual_seed(seed)
    model = BACKBONE.build()
    insert_adapters(model)
    with torch.no_grad():  # move the zero-initialized up-projections so the test sees values
        for name, param in model.named_parameters():
            if name.startswith("adapters."):
                param.add_(torch.randn_like(param))
    state = model.state_dict()
    return {k: state[k] for k in adapter_state_keys(model)}


def write_raw(folder: Path, tensors: dict[str, Tensor] | bytes, **card: Any) -> Path:
    """A module folder written directly (no checks), to test what loading refuses."""
    folder.mkdir(parents=True)
    data = tensors if isinstance(tensors, bytes) else safetensors.torch.save(tensors)
    (folder / MODULE_FILE).write_bytes(data)
    (folder / CARD_FILE).write_text(json.dumps(make_card(**card).to_json()))
    return folder


def load_refused(folder: Path, *parts: str) -> str:
    with pytest.raises(ModuleFormatError) as info:
        load_module(folder)
    message = str(info.value)
    for part in parts:
        assert part in message, message
    return message


def test_full_schema_matches_the_model_and_moe18_files() -> None:
    schema = module_schema(BACKBONE, "full")
    state = BACKBONE.build().state_dict()
    assert set(schema) == set(state) and len(schema) == 54
    assert schema["embedding.weight"] == ((64, 92), "F32")
    assert schema["convs.3.fc_full.weight"] == ((128, 169), "F32")
    assert schema["convs.0.bn2.num_batches_tracked"] == ((), "I64")
    header = safetensors.safe_open(str(moe18_dir() / "castelli_eform.safetensors"), "pt")
    assert set(header.keys()) == set(schema)


def test_adapter_schema_is_adapters_and_head() -> None:
    schema = module_schema(BACKBONE, "adapter")
    assert len(schema) == 4 * 4 + 4
    assert schema["adapters.conv0.down.weight"] == ((32, 64), "F32")
    assert schema["adapters.conv3.up.weight"] == ((64, 32), "F32")
    assert schema["fc_out.weight"] == ((1, 32), "F32")
    assert all(k.startswith(("adapters.", "conv_to_fc.", "fc_out.")) for k in schema)
    with pytest.raises(ModuleFormatError, match="module kind 'lora' is unknown"):
        module_schema(BACKBONE, "lora")


@pytest.mark.parametrize("kind", ["full", "adapter"])
def test_a_first_schema_lookup_leaves_the_global_rng_alone(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the model that gives the schema must not move torch's global generator: a
    seeded run would otherwise compute something else depending on whether a module was
    checked first."""
    monkeypatch.setattr(store, "_SCHEMAS", {})  # a process that has not built it yet
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    expected_next = torch.rand(3)
    torch.set_rng_state(before)
    schema = module_schema(BACKBONE, kind)
    assert schema and store._SCHEMAS  # it was built (and cached) here
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(3), expected_next)


def test_full_round_trip(tmp_path: Path) -> None:
    state = full_state()
    card = save_module(tmp_path / "m", state, make_card())
    assert card.module_id == sha256_file(tmp_path / "m" / MODULE_FILE) == sha256_state(state)
    assert load_card(tmp_path / "m") == card
    for path in (tmp_path / "m", tmp_path / "m" / CARD_FILE, tmp_path / "m" / MODULE_FILE):
        loaded = load_module(path)
        assert loaded.path == tmp_path / "m" and loaded.module_id == card.module_id
        assert loaded.card == card
    assert set(loaded.state) == set(state)
    assert all(torch.equal(loaded.state[k], state[k]) for k in state)
    model = BACKBONE.build()
    model.load_state_dict(loaded.state, strict=True)
    assert not list(tmp_path.glob("m/.*"))  # no temporary files left behind


def test_adapter_round_trip(tmp_path: Path) -> None:
    state = adapter_state()
    card = save_module(tmp_path / "a", state, make_card(kind="adapter"))
    loaded = load_module(tmp_path / "a")
    assert loaded.module_id == card.module_id == sha256_state(state)
    assert all(torch.equal(loaded.state[k], state[k]) for k in state)
    model = BACKBONE.build()
    insert_adapters(model)
    result = model.load_state_dict(loaded.state, strict=False)
    assert not result.unexpected_keys
    head = {k for k in state if not k.startswith("adapters.")}
    assert head == {"conv_to_fc.weight", "conv_to_fc.bias", "fc_out.weight", "fc_out.bias"}
    backbone_only = set(BACKBONE.build().state_dict()) - head  # BatchNorm fills its own counter
    assert set(result.missing_keys) == {k for k in backbone_only
                                        if not k.endswith("num_batches_tracked")}
    # An adapter state is not a full module, and the reverse.
    with pytest.raises(ModuleFormatError, match=r"50 missing tensor.*16 unexpected"):
        save_module(tmp_path / "b", state, make_card(kind="full"))
    assert not (tmp_path / "b").exists()


def test_sha256_state_ignores_order_device_and_layout() -> None:
    state = full_state()
    shuffled = dict(reversed(list(state.items())))
    shuffled["embedding.weight"] = state["embedding.weight"].t().contiguous().t()
    assert not shuffled["embedding.weight"].is_contiguous()
    assert sha256_state(shuffled) == sha256_state(state)
    assert sha256_state(full_state(seed=1)) != sha256_state(state)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_save_refuses_non_finite(tmp_path: Path, bad: float) -> None:
    state = full_state()
    state["convs.2.bn1.running_var"][5] = bad
    with pytest.raises(ModuleFormatError, match=r"non-finite .*'convs\.2\.bn1\.running_var' \(1\)"):
        save_module(tmp_path / "m", state, make_card())
    assert not (tmp_path / "m").exists()


def test_save_refuses_bad_card_or_state(tmp_path: Path) -> None:
    state = full_state()
    with pytest.raises(ModuleFormatError, match="card is not plain JSON"):
        save_module(tmp_path / "m", state, make_card(hyperparameters={"data": Path("x")}))
    with pytest.raises(ModuleFormatError, match=r"'normalizer\.std' must be > 0"):
        save_module(tmp_path / "m", state, make_card(normalizer=TargetNormalizer(0.0, 0.0)))
    with pytest.raises(ModuleFormatError, match="version '0' but this MoMa has version"):
        save_module(tmp_path / "m", state, make_card(backbone_version="0"))
    state["extra.weight"] = torch.zeros(2)
    with pytest.raises(ModuleFormatError, match="1 unexpected tensor"):
        save_module(tmp_path / "m", state, make_card())
    with pytest.raises(ModuleFormatError, match="not a named tensor"):
        save_module(tmp_path / "m", {"w": [1.0]}, make_card())  # type: ignore[dict-item]
    assert not (tmp_path / "m").exists()


def test_pickle_and_torch_checkpoints_are_refused(tmp_path: Path) -> None:
    load_refused(write_raw(tmp_path / "p", pickle.dumps(full_state())), "pickle",
                 "MoMa never unpickles")
    buffer = io.BytesIO()
    torch.save(full_state(), buffer)
    load_refused(write_raw(tmp_path / "z", buffer.getvalue()),
                 "this is a PyTorch pickle checkpoint", "MoMa never unpickles")


def test_truncated_module(tmp_path: Path) -> None:
    data = safetensors.torch.save(full_state())
    load_refused(write_raw(tmp_path / "t", data[: len(data) // 2]), "truncated")


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: s.pop("fc_out.bias"), "does not match the cgcnn full-module schema: 1 missing "
                                     "tensor(s): fc_out.bias"),
    (lambda s: s.update({"fc_out.scale": torch.ones(1)}), "1 unexpected tensor(s): fc_out.scale"),
    (lambda s: s.update({"embedding.weight": torch.zeros(64, 91)}),
     "tensor 'embedding.weight' has shape [64, 91], expected [64, 92]"),
    (lambda s: s.update({"embedding.weight": torch.zeros(64, 92, dtype=torch.float64)}),
     "tensor 'embedding.weight' has dtype F64, expected F32"),
    (lambda s: s["convs.1.fc_full.weight"].__setitem__((0, 0), float("nan")),
     "non-finite values (NaN/inf) in tensor(s) 'convs.1.fc_full.weight' (1)"),
    (lambda s: s["fc_out.weight"].fill_(float("-inf")), "'fc_out.weight' (32)"),
])
def test_load_refuses_schema_and_value_problems(tmp_path: Path, change: Any,
                                                expected: str) -> None:
    state = full_state()
    change(state)
    folder = write_raw(tmp_path / "m", state)
    message = load_refused(folder, expected)
    assert message.startswith(str(folder / MODULE_FILE))


def test_load_refuses_bytes_that_do_not_match_the_card(tmp_path: Path) -> None:
    card = save_module(tmp_path / "m", full_state(0), make_card())
    other = safetensors.torch.save(dict(sorted(full_state(1).items())))
    (tmp_path / "m" / MODULE_FILE).write_bytes(other)
    actual = hashlib.sha256(other).hexdigest()
    load_refused(tmp_path / "m", f"bytes hash to {actual}", f"module_id {card.module_id}")
    assert load_module(tmp_path / "m", verify_id=False).module_id == actual


def test_load_refuses_bad_cards(tmp_path: Path) -> None:
    folder = write_raw(tmp_path / "m", full_state())
    text = (folder / CARD_FILE).read_text()
    (folder / CARD_FILE).write_text(text.replace('"property"', '"prop"'))
    load_refused(folder, str(folder / CARD_FILE), "field 'prop' is not a card field")
    (folder / CARD_FILE).write_text(text.replace('"kind": "full"', '"kind": "partial"'))
    load_refused(folder, "'kind' is 'partial'")
    (folder / CARD_FILE).write_text(text.replace('"val_mae": 0.5', '"val_mae": NaN'))
    load_refused(folder, "not valid UTF-8 JSON", "NaN is not valid JSON")
    (folder / CARD_FILE).unlink()
    load_refused(folder, "card not found")
    load_refused(tmp_path / "absent", "no such module folder")


def test_card_missing_field(tmp_path: Path) -> None:
    folder = write_raw(tmp_path / "m", full_state())
    data = make_card().to_json()
    del data["base_sha256"]
    (folder / CARD_FILE).write_text(json.dumps(data))
    load_refused(folder, "field 'base_sha256' is missing")


def test_list_modules(tmp_path: Path) -> None:
    save_module(tmp_path / "lab" / "zeta", full_state(), make_card(name="zeta"))
    save_module(tmp_path / "alpha", adapter_state(), make_card(name="alpha", kind="adapter"))
    save_module(tmp_path / ".staging" / "hidden", full_state(), make_card(name="hidden"))
    found = list_modules(tmp_path)
    assert [(p.relative_to(tmp_path).as_posix(), c.name) for p, c in found] == [
        ("alpha", "alpha"), ("lab/zeta", "zeta")]
    assert found[0][1] == load_card(tmp_path / "alpha")
    (tmp_path / "lab" / "zeta" / CARD_FILE).write_text("{}")
    with pytest.raises(ModuleFormatError, match=r"zeta/card\.json: field 'format' is missing"):
        list_modules(tmp_path)
