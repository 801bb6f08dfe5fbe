"""Module cards: JSON round trip, strict validation naming the field, the target normalizer."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from moma.errors import ModuleFormatError
from moma.modules.card import CARD_FORMAT, ModuleCard, TargetNormalizer, utc_now_iso

SHA = "ab" * 32


def make_card(**changes: Any) -> ModuleCard:
    fields: dict[str, Any] = dict(
        name="jarvis_2d_eform-full-seed0", backbone="cgcnn", backbone_version="1",
        base_sha256=SHA, kind="full", task="jarvis_2d_eform", property="formation_energy",
        unit="eV/atom", normalizer=TargetNormalizer(-0.5, 0.25),
        dataset_size={"train": 443, "val": 95, "test": 95}, split="seed0",
        metrics={"val_mae": 0.11, "test_mae": 0.12}, hyperparameters={"lr": 8e-5, "epochs": 60},
        featurizer={"featurizer": "cgcnn-graph", "radius": 8.0}, software_version="0.1.0",
        created="2025-01-31T12:00:00+00:00",
    )
    fields.update(changes)
    return ModuleCard(**fields)


def card_json(**changes: Any) -> dict[str, Any]:
    data = make_card().to_json()
    data.update(changes)
    return data


def refused(data: dict[str, Any], *parts: str) -> None:
    with pytest.raises(ModuleFormatError) as info:
        ModuleCard.from_json(data, source="lab/card.json")
    message = str(info.value)
    assert message.startswith("lab/card.json: ")
    for part in parts:
        assert part in message, message


def test_round_trip_through_json_text() -> None:
    card = make_card(module_id="cd" * 32, contributor_key_id="lab-a:1234",
                     participants=[{"lab": "a", "n": 10}, {"lab": "b", "n": 12}],
                     parents=[{"id": SHA, "name": "castelli_eform", "weight": 0.7}],
                     extra={"note": [1, 2]})
    data = card.to_json()
    assert data["format"] == CARD_FORMAT
    assert data["normalizer"] == {"mean": -0.5, "std": 0.25}
    again = ModuleCard.from_json(json.loads(json.dumps(data)))
    assert again == card
    assert again.to_json() == data


def test_to_json_is_a_copy() -> None:
    card = make_card()
    data = card.to_json()
    data["metrics"]["val_mae"] = 99.0
    data["hyperparameters"]["lr"] = 1.0
    assert card.metrics["val_mae"] == 0.11 and card.hyperparameters["lr"] == 8e-5


def test_optional_fields_default() -> None:
    data = card_json()
    for name in ("module_id", "contributor_key_id", "participants", "parents", "extra"):
        del data[name]
    card = ModuleCard.from_json(data)
    assert (card.module_id, card.contributor_key_id) == ("", None)
    assert card.participants == card.parents == [] and card.extra == {}


@pytest.mark.parametrize("name", ["name", "backbone", "backbone_version", "base_sha256", "kind",
                                  "task", "property", "unit", "normalizer", "dataset_size",
                                  "split", "metrics", "hyperparameters", "featurizer",
                                  "software_version", "created", "format"])
def test_missing_field(name: str) -> None:
    data = card_json()
    del data[name]
    refused(data, f"{name!r} is missing")


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("kind", "lora", "'kind' is 'lora', not one of full, adapter"),
    ("backbone", "schnet", "'backbone' is 'schnet', not one of"),
    ("base_sha256", "AB" * 32, "sha256 (64 lowercase hex digits)"),
    ("base_sha256", "ab" * 31, "sha256 (64 lowercase hex digits)"),
    ("module_id", "xyz", "'module_id' must be a sha256"),
    ("name", "", "'name' must be a non-empty string"),
    ("name", None, "'name' is null"),
    ("task", 3, "'task' must be a non-empty string"),
    ("metrics", {"val_mae": "low"}, "'metrics.val_mae' must be a finite number"),
    ("metrics", {"val_mae": float("nan")}, "'metrics.val_mae' must be a finite number"),
    ("dataset_size", {"train": -1}, "'dataset_size.train' must be a non-negative integer"),
    ("dataset_size", {"train": 1.5}, "'dataset_size.train' must be a non-negative integer"),
    ("hyperparameters", [1], "'hyperparameters' must be a JSON object"),
    ("created", "yesterday", "not an ISO-8601 time"),
    ("created", "2025-01-31T12:00:00", "without a time zone"),
    ("participants", {"lab": "a"}, "'participants' must be a list of JSON objects"),
    ("format", "moma-module-card/9", "card format 'moma-module-card/9' is not supported"),
    ("licence", "MIT", "'licence' is not a card field"),
])
def test_bad_values(name: str, value: Any, expected: str) -> None:
    refused(card_json(**{name: value}), expected)


@pytest.mark.parametrize(("normalizer", "expected"), [
    ({"mean": 0.0, "std": 0.0}, "'normalizer.std' must be > 0"),
    ({"mean": 0.0, "std": -2.0}, "'normalizer.std' must be > 0"),
    ({"mean": 0.0, "std": float("inf")}, "'normalizer.std' must be a finite number"),
    ({"mean": float("nan"), "std": 1.0}, "'normalizer.mean' must be a finite number"),
    ({"mean": 0.0}, "must have exactly 'mean' and 'std'"),
])
def test_bad_normalizer(normalizer: dict[str, float], expected: str) -> None:
    refused(card_json(normalizer=normalizer), expected)


def test_not_an_object() -> None:
    with pytest.raises(ModuleFormatError, match=r"x\.json: a module card must be a JSON object"):
        ModuleCard.from_json([], source="x.json")  # type: ignore[arg-type]


def test_normalizer_numbers() -> None:
    norm = TargetNormalizer(mean=2.0, std=4.0)
    np.testing.assert_allclose(norm.normalize([2.0, 6.0, -2.0]), [0.0, 1.0, -1.0])
    np.testing.assert_allclose(norm.denormalize(np.array([0.5, -0.25])), [4.0, 1.0])
    y = np.array([0.3, 1e3, -7.25])
    np.testing.assert_allclose(norm.denormalize(norm.normalize(y)), y)


def test_utc_now_is_accepted() -> None:
    stamp = utc_now_iso()
    assert stamp.endswith("+00:00")
    assert ModuleCard.from_json(card_json(created=stamp)).created == stamp
