"""The lab's side of a federation: its data, its key, and what it does with each message.

Everything here runs inside a lab's SuperNode (Flower starts one ClientApp process per
message). The dataset file, the graphs and the labels never leave this process: the handshake
answers with a signed statement of sizes and train-target count/mean/M2, a training round
returns only the module's trainable tensors, an evaluation round only MAEs and counts.

Node config keys (``flower-supernode --node-config``, or ``moma-client federate lab``):
``data`` (dataset file, required), ``key`` (the lab's Ed25519 private key, required),
``base`` (a full module folder: the base this lab agreed to train from; required for adapter
runs), ``base-sha256`` (pin a base by id instead), ``split`` (default ``seed0``), ``target``
(multi-target files), ``skip-invalid``, ``device``. ``fault`` exists for failure tests only:
``nan:R`` returns NaN tensors from round R on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from moma.backbones.adapters import insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.backbones.registry import get_backbone
from moma.data.readers import load_dataset
from moma.errors import DataError, IncompatibleModulesError
from moma.modules.card import TargetNormalizer
from moma.modules.store import load_module, module_schema
from moma.training.loop import TrainConfig, fit, predict_standardized
from moma.training.modeling import module_state
from moma.training.run import PreparedData, prepare
from moma.trust.keys import load_private_key
from moma_client.federation.protocol import FederationError, RunSpec, TargetStats


@dataclass
class LabSetup:
    """A lab's node config, checked."""

    data: Path
    key: Path
    base: Path | None
    base_sha256: str
    split: str
    target: str | None
    skip_invalid: bool
    device: str
    fault: str

    @classmethod
    def from_node_config(cls, config: dict[str, Any]) -> LabSetup:
        def text(name: str, default: str = "") -> str:
            value = config.get(name, default)
            return str(value) if value is not None else default

        if not text("data"):
            raise DataError("this SuperNode has no 'data' in its node config; start it with "
                            "moma-client federate lab --data FILE")
        if not text("key"):
            raise FederationError("this SuperNode has no 'key' in its node config; create one "
                                  "with moma-client keys init and pass --key")
        return cls(
            data=Path(text("data")).expanduser(),
            key=Path(text("key")).expanduser(),
            base=Path(text("base")).expanduser() if text("base") else None,
            base_sha256=text("base-sha256"),
            split=text("split", "seed0"),
            target=text("target") or None,
            skip_invalid=str(config.get("skip-invalid", "false")).lower() in ("1", "true"),
            device=text("device", "cpu"),
            fault=text("fault"),
        )

    def fault_round(self, kind: str) -> int | None:
        """The round from which the test-only fault ``kind`` applies, or None."""
        if not self.fault.startswith(kind + ":"):
            return None
        return int(self.fault.split(":", 1)[1])


@dataclass
class LabData:
    """The lab's prepared dataset (graphs cached on disk by :func:`prepare`)."""

    setup: LabSetup
    backbone: Backbone
    prepared: PreparedData
    base_sha256: str

    @property
    def prop(self) -> str:
        return self.prepared.dataset.target

    @property
    def unit(self) -> str:
        return self.prepared.dataset.unit

    def sizes(self) -> dict[str, int]:
        return {part: len(self.prepared.split.get(part, [])) for part in ("train", "val", "test")}

    def train_stats(self) -> TargetStats:
        return TargetStats.of(self.prepared.part("train")[1])


def open_lab(node_config: dict[str, Any], spec: RunSpec) -> LabData:
    """Load and featurize the lab's data for ``spec``'s backbone and split."""
    setup = LabSetup.from_node_config(node_config)
    backbone = get_backbone(spec.backbone)
    dataset = load_dataset(setup.data, target=setup.target, skip_invalid=setup.skip_invalid)
    prepared = prepare(dataset, backbone, setup.split, seed=spec.seed,
                       skip_invalid=setup.skip_invalid)
    base = setup.base_sha256
    if setup.base is not None:
        base = load_module(setup.base).module_id
    return LabData(setup, backbone, prepared, base)


def check_spec(lab: LabData, spec: RunSpec) -> None:
    """Refuse to train for a run whose property, unit or base differs from the lab's."""
    if lab.prop != spec.property or lab.unit != spec.unit:
        raise DataError(
            f"{lab.setup.data}: this lab's data is {lab.prop!r} in {lab.unit!r} but the run "
            f"declares {spec.property!r} in {spec.unit!r}; join a run for this property")


def wire_schema(backbone: Backbone, kind: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the tensors that travel: the module's tensors except BatchNorm's
    ``num_batches_tracked`` counters (not trained, meaningless to average, and 0-d)."""
    return {k: shape for k, (shape, _) in module_schema(backbone, kind).items()
            if not k.endswith("num_batches_tracked")}


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


def evaluate(lab: LabData, spec: RunSpec, candidates: dict[str, dict[str, Tensor]],
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


def lab_private_key(lab: LabData) -> Any:
    return load_private_key(lab.setup.key)


def to_wire(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Float32 copies of the tensors that travel (see :func:`wire_schema`); FedAvg and Flower's
    DP clipping scale arrays in place, so everything on the wire is floating point."""
    return {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()
            if not k.endswith("num_batches_tracked")}
