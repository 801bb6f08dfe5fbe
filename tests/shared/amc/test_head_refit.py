"""Inheriting the composed head: the affine refit is least squares and folds into the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moma.amc.head_refit import affine_fit, last_head_linear, refit_head
from moma.backbones.cgcnn.backbone import CGCNNBackbone
from moma.data.readers import load_dataset
from moma.paths import downstream_task_path
from moma.training.loop import predict_standardized


def test_affine_fit_recovers_and_is_least_squares(rng: np.random.Generator) -> None:
    pred = rng.normal(size=200)
    assert affine_fit(pred, 3.0 * pred - 2.0) == pytest.approx((3.0, -2.0))
    target = 0.5 * pred + rng.normal(scale=0.3, size=200)
    a, b = affine_fit(pred, target)
    residual = target - (a * pred + b)
    assert abs(residual.sum()) < 1e-9 and abs(residual @ pred) < 1e-9  # normal equations
    assert affine_fit(np.ones(5), np.arange(5.0)) == (0.0, 2.0)  # constant: mean only


def test_refit_folds_the_map_into_the_cgcnn_head() -> None:
    backbone = CGCNNBackbone()
    torch.manual_seed(0)
    model = backbone.build()
    layer = last_head_linear(model)
    assert layer.out_features == 1
    dataset = load_dataset(downstream_task_path("jarvis_2d_eform"))
    featurizer = backbone.featurizer()
    graphs = [featurizer.featurize(r.structure, r.id) for r in dataset.records[:40]]
    before = predict_standardized(backbone, model, graphs)
    y = dataset.targets[:40]
    y_std = (y - y.mean()) / y.std()
    a, b = refit_head(backbone, model, graphs, y_std)
    after = predict_standardized(backbone, model, graphs)
    np.testing.assert_allclose(after, a * before + b, rtol=1e-4, atol=1e-5)
    assert np.mean((after - y_std) ** 2) <= np.mean((before - y_std) ** 2) + 1e-9
    assert (a, b) == pytest.approx(affine_fit(before, y_std))


def test_head_inputs_feed_the_output_layer() -> None:
    """The ``head`` kNN layer is exactly what the head's output layer reads (CGCNN: 32-dim)."""
    from moma.amc.selection import head_inputs

    backbone = CGCNNBackbone()
    torch.manual_seed(1)
    model = backbone.build()
    dataset = load_dataset(downstream_task_path("jarvis_2d_eform"))
    featurizer = backbone.featurizer()
    graphs = [featurizer.featurize(r.structure, r.id) for r in dataset.records[:30]]
    hidden = head_inputs(backbone, model, graphs, batch_size=7)
    assert hidden.shape == (30, last_head_linear(model).in_features) == (30, 32)
    layer = last_head_linear(model)
    out = torch.from_numpy(hidden).float() @ layer.weight.T + layer.bias
    np.testing.assert_allclose(out.squeeze(-1).detach().numpy(),
                               predict_standardized(backbone, model, graphs), rtol=1e-4, atol=1e-4)
