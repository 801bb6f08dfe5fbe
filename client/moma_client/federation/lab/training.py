"""The lab's local work in each round: rebuild the global model, evaluate it, train it.

Runs inside the lab's ClientApp; the graphs and labels stay in this process, and only the
trainable tensors (:mod:`moma_client.federation.wire`) and MAEs go back.
"""


from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from moma.backbones.adapters import insert_adapters
from moma.backbones.base import BackboneModel
from moma.errors import IncompatibleModulesError
from moma.modules.card import TargetNormalizer
from moma.modules.store import load_module
from moma.training.loop import TrainConfig, fit, predict_standardized
from moma.training.modeling import module_state
from moma_client.federation.lab.setup import LabData, check_spec
from moma_client.federation.protocol import RunSpec
from moma_client.federation.wire import wire_schema


def build_model(lab: LabData, spec: RunSpec, state: dict[str, Tensor]) -> BackboneModel:
    """The global model from received tensors (and, for adapters, the lab's own base)."""
    backbone = lab.backbone
    expected = wire_schema(backbone, spec.kind)
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))[:3]
        extra = sorted(set(state) - set(expected))[:3]
        raise IncompatibleModulesError(f"received tensors do not fit the {spec.backbone} "
                                       f"{spec.kind} schema (missing {missing}, extra {extra})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != expected[name]:
            raise IncompatibleModulesError(f"received tensor {name} has shape "
                                           f"{tuple(tensor.shape)}, expected {expected[name]}")
        if not bool(torch.isfinite(tensor).all()):
            raise IncompatibleModulesError(f"received tensor {name} has NaN/inf values")
    model = backbone.build()
    if spec.kind == "full":
        model.load_state_dict({**model.state_dict(), **state}, strict=True)
        return model
    if lab.setup.base is None:
        raise IncompatibleModulesError("adapter runs need the base module on the lab: pass "
                                       "--base MODULE_DIR to moma-client federate lab")
    model.load_state_dict(load_module(lab.setup.base).state, strict=True)
    insert_adapters(model)
    model.load_state_dict({**model.state_dict(), **state}, strict=True)
    return model


def mae(lab: LabData, model: BackboneModel, part: str, norm: TargetNormalizer) -> tuple[float, int]:
    """MAE in target units of ``model`` on the lab's ``part`` split, and its size."""
    graphs, y = lab.prepared.part(part) if lab.prepared.split.get(part) else ([], np.zeros(0))
    if not graphs:
        return 0.0, 0
    pred = norm.denormalize(predict_standardized(lab.backbone, model, graphs,
                                                 device=lab.setup.device))
    return float(np.mean(np.abs(pred - y))), len(graphs)


def train_round(lab: LabData, spec: RunSpec, state: dict[str, Tensor], norm: TargetNormalizer,
                server_round: int) -> tuple[dict[str, Tensor], dict[str, float]]:
    """One local round: evaluate the received global model on val, then ``fit`` a few epochs.

    Returns the trained tensors (float32 on the wire, see :func:`to_wire`) and the metrics.
    The global model's val MAE is measured here, before training, so that each round costs
    each lab one ClientApp process instead of two.
    """
    check_spec(lab, spec)
    model = build_model(lab, spec, state)
    global_val, n_val = mae(lab, model, "val", norm)
    train_g, train_y = lab.prepared.part("train")
    val_g, val_y = lab.prepared.part("val")
    config = TrainConfig(epochs=spec.local_epochs, batch_size=spec.batch_size, lr=spec.lr,
                         head_lr_factor=spec.head_lr_factor, patience=spec.local_epochs,
                         seed=spec.seed + 1000 * server_round, device=lab.setup.device)
    tick = time.perf_counter()
    result = fit(lab.backbone, model, train_g, norm.normalize(train_y), val_g,
                 norm.normalize(val_y), config)
    fit_seconds = time.perf_counter() - tick
    local_val, _ = mae(lab, model, "val", norm)
    out = module_state(model, spec.kind)
    nan_from = lab.setup.fault_round("nan")
    if nan_from is not None and server_round >= nan_from:
        first = sorted(out)[0]
        out[first] = torch.full_like(out[first], math.nan)
    last_loss = result.history[-1].train_loss if result.history else math.nan
    metrics = {"global_val_mae": global_val, "n_val": float(n_val),
               "local_val_mae": local_val, "train_loss": float(last_loss),
               "fit_seconds": fit_seconds}
    return out, metrics


def evaluate_candidates(lab: LabData, spec: RunSpec, candidates: dict[str, dict[str, Tensor]],
             norm: TargetNormalizer) -> dict[str, float]:
    """Val and test MAE of each candidate global state (``final``, maybe ``best``), plus the
    pooled-train-mean baseline. The coordinator picks the candidate by pooled *val* MAE and
    reports only that candidate's test MAE, so the test split never steers a choice."""
    check_spec(lab, spec)
    metrics: dict[str, float] = {"n_val": float(lab.sizes()["val"]),
                                 "n_test": float(lab.sizes()["test"]),
                                 "test_mae_train_mean": 0.0}
    if lab.prepared.split.get("test"):
        y = lab.prepared.part("test")[1]
        metrics["test_mae_train_mean"] = float(np.mean(np.abs(y - norm.mean)))
    for name, state in candidates.items():
        model = build_model(lab, spec, state)
        metrics[f"{name}.val_mae"] = mae(lab, model, "val", norm)[0]
        metrics[f"{name}.test_mae"] = mae(lab, model, "test", norm)[0]
    return metrics
