"""Inherit the composed task head and refit it to the new target with one affine map.

The paper starts fine-tuning the composed backbone with a fresh, randomly initialized head.
When the composed modules were trained on properties related to the new one (formation
energies for a formation energy, gaps for a gap), their heads already map the composed
embedding to something correlated with the new target, only on another scale and offset
(each module's own standardization). Keeping the weighted head and fitting

    y_std ~= a * h(x) + b            (least squares on the training split)

then folding ``a`` and ``b`` into the head's last linear layer (W' = a W, c' = a c + b) gives
fine-tuning a start whose predictions are already the best affine use of the inherited head,
instead of noise. A remedy to try where AMC's fresh-head start trails backbone fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from moma.backbones.base import Backbone, BackboneModel
from moma.errors import MomaError
from moma.training.loop import predict_standardized


def last_head_linear(model: BackboneModel) -> torch.nn.Linear:
    """The head's output layer: the last ``nn.Linear`` under the head prefixes, one output."""
    found = [module for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and model.is_head_key(name + ".")]
    if not found or found[-1].out_features != 1:
        raise MomaError(f"{type(model).__name__}: no single-output linear layer in its head "
                        f"{model.head_prefixes}: the inherited head cannot be refitted")
    return found[-1]


def affine_fit(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares ``a, b`` with ``a * pred + b ~= target`` (``a = 0`` for constant pred)."""
    pred, target = np.asarray(pred, float), np.asarray(target, float)
    centered = pred - pred.mean()
    variance = float(centered @ centered)
    a = float(centered @ (target - target.mean()) / variance) if variance > 1e-12 else 0.0
    return a, float(target.mean() - a * pred.mean())


def refit_head(backbone: Backbone, model: BackboneModel, graphs: Sequence[Any],
               targets_std: np.ndarray, device: str = "cpu") -> tuple[float, float]:
    """Fold the least-squares affine map of the model's predictions into its head, in place.

    Returns ``(a, b)``. Afterwards the model's standardized predictions are ``a * old + b``.
    """
    a, b = affine_fit(predict_standardized(backbone, model, graphs, device=device), targets_std)
    layer = last_head_linear(model)
    with torch.no_grad():
        layer.weight.mul_(a)
        if layer.bias is not None:
            layer.bias.mul_(a).add_(b)
        elif b != 0.0:
            raise MomaError("the head's output layer has no bias: cannot add the offset")
    return a, b
