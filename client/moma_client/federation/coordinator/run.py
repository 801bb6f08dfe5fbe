"""The coordinator's side of a run, inside the ServerApp: handshake, FedAvg rounds, the module.

1. Start state: ``initial_model`` (the same as ``moma-client train``: the declared base, a fresh
   seeded head, adapters for an adapter run) gives the base sha256 and the trainable tensors.
2. Handshake (:mod:`~moma_client.federation.coordinator.admission`): a query to every
   connected SuperNode; each lab answers with a signed join statement. A lab is refused (and
   the card says why) if its signature or nonce is wrong, its data is another property or
   unit, or it pinned another base.
3. Rounds: Flower's FedAvg (optionally inside Flower's server-side DP wrapper) through
   :class:`~moma_client.federation.coordinator.strategy.Screened`; each lab also reports the
   val MAE of the global state it received, so the best global state by pooled val MAE is
   kept (the same early-stopping rule as central training).
4. End: the final global state is evaluated on every lab's val split, the best state is then
   evaluated once on the test splits, and the module is saved with :func:`save_module`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, Strategy
from flwr.supercore import log

import moma
from moma.atomic_io import write_json
from moma.backbones.registry import get_backbone
from moma.modules.card import ModuleCard, TargetNormalizer, utc_now_iso
from moma.modules.store import load_module, save_module
from moma.training.modeling import initial_model, module_state
from moma_client.federation.coordinator.admission import handshake, wait_for_labs
from moma_client.federation.coordinator.strategy import LabFedAvg, Ledger, Screened
from moma_client.federation.protocol import (
    CONFIG_KEY,
    METRICS_KEY,
    FederationError,
    JoinStatement,
    RunSpec,
    pooled_normalizer,
)
from moma_client.federation.wire import to_wire, wire_schema

REPORT_FILE = "federation.json"
PROGRESS_FILE = "progress.json"


def _progress(spec: RunSpec, stage: str, **extra: Any) -> None:
    """A small JSON file the coordinator's CLI (and tests) can watch."""
    folder = Path(spec.out)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / PROGRESS_FILE, {"stage": stage, "time": time.time(), **extra})


def _evaluate(grid: Grid, spec: RunSpec, labs: dict[int, JoinStatement],
              candidates: dict[str, ArrayRecord], norm: TargetNormalizer
              ) -> dict[str, dict[str, float]]:
    """One evaluate message per lab holding every candidate; per-lab metrics by key id."""
    config = ConfigRecord({"norm-mean": norm.mean, "norm-std": norm.std})
    online = set(grid.get_node_ids())
    messages = [Message(RecordDict({**candidates, CONFIG_KEY: config}), dst_node_id=n,
                        message_type=MessageType.EVALUATE) for n in labs if n in online]
    out: dict[str, dict[str, float]] = {}
    for msg in grid.send_and_receive(messages, timeout=spec.round_timeout):
        node = msg.metadata.src_node_id
        if node not in labs:
            continue
        if msg.has_error():
            log(WARNING, "final evaluation failed on %s: %s", labs[node].key_id,
                msg.error.reason)
            continue
        metrics = msg.content.metric_records.get(METRICS_KEY)
        if metrics is not None:
            out[labs[node].key_id] = {k: float(v) for k, v in metrics.items()  # type: ignore[arg-type]
                                      if isinstance(v, int | float)}
    return out


def _choose(results: dict[str, dict[str, float]], names: list[str]
            ) -> tuple[str, dict[str, dict[str, float]]]:
    """The candidate with the lowest pooled val MAE, and each lab's metrics for it."""
    pooled = {name: _pooled({k: {"v": r[f"{name}.val_mae"], "n": r["n_val"]}
                             for k, r in results.items()}, "v", "n") for name in names}
    best = min(names, key=lambda name: pooled[name])
    chosen = {k: {"val_mae": r[f"{best}.val_mae"], "n_val": r["n_val"],
                  "test_mae": r[f"{best}.test_mae"], "n_test": r["n_test"],
                  "test_mae_train_mean": r["test_mae_train_mean"]}
              for k, r in results.items()}
    return best, chosen


def _pooled(results: dict[str, dict[str, float]], value: str, count: str) -> float:
    total = sum(r[count] for r in results.values())
    if total <= 0:
        return math.nan
    return sum(r[value] * r[count] for r in results.values()) / total


def run_federation(grid: Grid, spec: RunSpec) -> ModuleCard:
    """The whole run (see the module docstring); returns the saved module's card."""
    started = time.time()
    backbone = get_backbone(spec.backbone)
    init = None if spec.base == "scratch" else load_module(Path(spec.base))
    start = initial_model(backbone, spec.kind, init, spec.seed)
    trainable = module_state(start.model, spec.kind)
    _progress(spec, "waiting for labs")
    nodes = wait_for_labs(grid, spec, spec.expected_labs)
    labs, refused = handshake(grid, spec, nodes, start.base_sha256)
    _progress(spec, "joined", labs=[lab.key_id for lab in labs.values()], refused=refused)
    if len(labs) < spec.min_labs:
        write_json(Path(spec.out) / REPORT_FILE, {"status": "refused", "refused": refused})
        raise FederationError(f"only {len(labs)} lab(s) joined (min-labs {spec.min_labs}); "
                              f"refused: {refused}")
    norm = pooled_normalizer([lab.stats for lab in labs.values()])
    ledger = Ledger(labs, wire_schema(backbone, spec.kind), spec.min_labs)
    inner: Strategy = LabFedAvg(ledger, fraction_evaluate=0.0, min_train_nodes=0,
                                min_available_nodes=0)
    if spec.dp_enabled():
        inner = DifferentialPrivacyServerSideFixedClipping(
            inner, spec.dp_noise_multiplier, spec.dp_clipping_norm, len(labs))
    strategy = Screened(inner, ledger)
    train_config = ConfigRecord({"norm-mean": norm.mean, "norm-std": norm.std})

    def after_round(server_round: int, _arrays: ArrayRecord) -> None:
        _progress(spec, "round", round=server_round, rounds=spec.rounds)
        return None

    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(to_wire(trainable)),
                            num_rounds=spec.rounds, timeout=spec.round_timeout,
                            train_config=train_config, evaluate_fn=after_round)
    final = result.arrays if len(result.arrays) else ArrayRecord(to_wire(trainable))
    _progress(spec, "final evaluation")
    candidates = {"final": final}
    if ledger.best_arrays is not None and 0 <= ledger.best_round < spec.rounds:
        candidates["best"] = ledger.best_arrays
    results = _evaluate(grid, spec, labs, candidates, norm)
    if not results:
        raise FederationError("no lab answered the final evaluation; no module was written")
    chosen_name, tested = _choose(results, list(candidates))
    best = candidates[chosen_name]
    if chosen_name == "final":
        ledger.best_round = spec.rounds
    return _save(spec, start, best, norm, labs, refused, ledger, tested, started)


def _save(spec: RunSpec, start: Any, best: ArrayRecord, norm: TargetNormalizer,
          labs: dict[int, JoinStatement], refused: list[dict[str, str]], ledger: Ledger,
          tested: dict[str, dict[str, float]], started: float) -> ModuleCard:
    backbone = get_backbone(spec.backbone)
    model = start.model
    received = {k: torch.from_numpy(v.numpy().copy()) for k, v in best.items()}
    model.load_state_dict({**model.state_dict(), **received}, strict=True)
    state = module_state(model, spec.kind)
    rounds_of = {lab.key_id: sum(lab.key_id in r.averaged for r in ledger.rounds)
                 for lab in labs.values()}
    participants = []
    for lab in labs.values():
        entry = lab.participant()
        entry["rounds_averaged"] = rounds_of[lab.key_id]
        entry["metrics"] = tested.get(lab.key_id, {})
        participants.append(entry)
    sizes = {part: sum(lab.sizes.get(part, 0) for lab in labs.values())
             for part in ("train", "val", "test")}
    metrics = {
        "val_mae": _pooled(tested, "val_mae", "n_val"),
        "test_mae": _pooled(tested, "test_mae", "n_test"),
        "test_mae_train_mean": _pooled(tested, "test_mae_train_mean", "n_test"),
        "best_round": float(ledger.best_round),
        "rounds": float(spec.rounds),
        "labs": float(len(labs)),
        "train_seconds": time.time() - started,
    }
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    dp = ({"mechanism": "Flower DifferentialPrivacyServerSideFixedClipping",
           "clipping_norm": spec.dp_clipping_norm,
           "noise_multiplier": spec.dp_noise_multiplier} if spec.dp_enabled() else None)
    hyper = {"federated": True, "strategy": "FedAvg (weighted by train records)",
             "rounds": spec.rounds, "local_epochs": spec.local_epochs,
             "batch_size": spec.batch_size, "lr": spec.lr, "head_lr_factor": spec.head_lr_factor,
             "loss": "l1", "seed": spec.seed, "kind": spec.kind, "init": start.init,
             "min_labs": spec.min_labs, "differential_privacy": dp}
    federation = {
        "rounds": [r.to_json() for r in ledger.rounds],
        "refused": refused,
        "best_round": ledger.best_round,
        "normalizer": "pooled from each lab's signed train count/mean/M2",
        "nonce": spec.nonce,
        "labs_dropped": sorted({e["lab"] for r in ledger.rounds for e in r.excluded
                                if e["lab"] != "*"}),
    }
    card = ModuleCard(
        name=spec.name or f"{spec.task}-{spec.backbone}-{spec.kind}-federated",
        backbone=backbone.name, backbone_version=backbone.version,
        base_sha256=start.base_sha256, kind=spec.kind, task=spec.task,
        property=spec.property, unit=spec.unit, normalizer=norm, dataset_size=sizes,
        split=spec.split, metrics=metrics, hyperparameters=hyper,
        featurizer=backbone.featurizer().config(), software_version=moma.__version__,
        created=utc_now_iso(), contributor_key_id=spec.coordinator_key_id or None,
        participants=participants, extra={"federation": federation})
    saved = save_module(Path(spec.out), state, card)
    write_json(Path(spec.out) / REPORT_FILE,
               {"status": "done", "module_id": saved.module_id, **federation,
                "metrics": saved.metrics,
                "spec": {k: v for k, v in dataclasses.asdict(spec).items()}})
    _progress(spec, "done", module_id=saved.module_id)
    log(INFO, "federated module %s written to %s (test MAE %s)", saved.module_id[:12],
        spec.out, json.dumps(saved.metrics.get("test_mae")))
    return saved
