"""The training loop: learning happens, seeds repeat, adapters touch nothing of the backbone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from moma.backbones.adapters import adapter_state_keys, count_trainable, insert_adapters
from moma.backbones.cgcnn.backbone import CGCNNBackbone
from moma.graphs.cache import featurize
from moma.training.loop import TrainConfig, fit, predict_standardized
from tests.conftest import to_structure


@pytest.fixture(scope="module")
def small(jarvis_2d_eform: dict[str, Any]) -> dict[str, Any]:
    backbone = CGCNNBackbone()
    records = jarvis_2d_eform["records"]
    split = jarvis_2d_eform["splits"]["seed0"]
    items = [(r["id"], to_structure(r)) for r in records]
    graphs = featurize(backbone.featurizer(), items, cache=False).graphs
    y = np.array([r["target"] for r in records])
    tr, va = split["train"][:96], split["val"][:48]
    mu, sd = y[tr].mean(), y[tr].std()
    return {
        "backbone": backbone,
        "train": ([graphs[i] for i in tr], (y[tr] - mu) / sd),
        "val": ([graphs[i] for i in va], (y[va] - mu) / sd),
    }


def _fit(small: dict[str, Any], model: Any, **kw: Any) -> Any:
    config = TrainConfig(**{"epochs": 4, "batch_size": 16, "lr": 3e-3, "patience": 10, **kw})
    return fit(small["backbone"], model, *small["train"], *small["val"], config)


def test_training_lowers_validation_error(small: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = small["backbone"].build()
    before = float(np.mean(np.abs(predict_standardized(small["backbone"], model, small["val"][0])
                                  - small["val"][1])))
    result = _fit(small, model, epochs=8)
    assert result.best_val_mae < 0.8 * before
    assert len(result.history) == 8 and result.structures_seen == 8 * 96


def test_same_seed_same_weights(small: dict[str, Any]) -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(1)
        model = small["backbone"].build()
        states.append(_fit(small, model, seed=7).best_state)
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    torch.manual_seed(1)
    other = _fit(small, small["backbone"].build(), seed=8).best_state
    assert any(not torch.equal(states[0][k], other[k]) for k in states[0])


def test_adapter_training_changes_no_backbone_tensor(small: dict[str, Any], moe18: Any) -> None:
    backbone = small["backbone"]
    model = backbone.build()
    model.load_state_dict(load_file(str(moe18 / "mp_eform.safetensors")), strict=True)
    reference = predict_standardized(backbone, model, small["val"][0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    insert_adapters(model)
    # Near-identity initialization: inserting adapters leaves predictions unchanged.
    assert np.allclose(predict_standardized(backbone, model, small["val"][0]), reference,
                       atol=1e-6)
    model.reset_head()
    result = _fit(small, model, epochs=3)
    after = model.state_dict()
    stored = set(adapter_state_keys(model))
    for key, value in before.items():
        if key not in stored:
            assert torch.equal(value, after[key]), f"backbone tensor {key} changed"
    adapter_keys = [k for k in stored if k.startswith("adapters.")]
    assert len(adapter_keys) == 4 * 4  # 4 convs x (down, up) x (weight, bias)
    assert any(not torch.allclose(after[k], torch.zeros_like(after[k]))
               for k in adapter_keys if ".up." in k)
    assert count_trainable(model) < 0.2 * sum(p.numel() for p in model.parameters())
    assert np.isfinite(result.best_val_mae)
