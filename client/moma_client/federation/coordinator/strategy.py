"""FedAvg over the labs that joined, with every reply screened before it is averaged.

Layers, outermost first::

    Screened  ->  [Flower DP wrapper]  ->  LabFedAvg (Flower's FedAvg)

``LabFedAvg`` is Flower's FedAvg, sending only to the labs that passed the handshake and are
still connected (FedAvg's own sampling would wait for a fixed node count forever once a lab
dropped out). ``Screened`` drops, before aggregation, every reply that would make a silently
wrong module: an error or no reply (the lab dropped out or its ClientApp failed), tensors that
do not fit the module schema, non-finite tensors, or a sample count other than the one the lab
signed in its join statement (a lab cannot buy weight). Screening sits outside the DP wrapper
because Flower's DP wrappers skip the whole round when any reply is an error. Every decision
goes to the :class:`Ledger`, which becomes the card's account of the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Strategy
from flwr.supercore import log

from moma_client.federation.protocol import NUM_EXAMPLES, JoinStatement


@dataclass
class RoundRecord:
    """What happened in one round: who was averaged, who was left out and why."""

    round: int
    averaged: list[str] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    updated: bool = False
    global_val_mae: float | None = None
    lab_val_mae: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "averaged": list(self.averaged),
                "excluded": [dict(e) for e in self.excluded], "updated": self.updated,
                "lab_val_mae_before": dict(self.lab_val_mae),
                **({} if self.global_val_mae is None
                   else {"global_val_mae_before": self.global_val_mae})}


@dataclass
class Ledger:
    """The run's account: labs by node id, per-round records, best global state by val MAE."""

    labs: dict[int, JoinStatement]
    expected_keys: dict[str, tuple[int, ...]]
    min_labs: int
    rounds: list[RoundRecord] = field(default_factory=list)
    sent: dict[int, ArrayRecord] = field(default_factory=dict)
    targets: dict[int, list[int]] = field(default_factory=dict)
    best_round: int = -1
    best_val: float = math.inf
    best_arrays: ArrayRecord | None = None

    def name(self, node_id: int) -> str:
        lab = self.labs.get(node_id)
        return lab.key_id if lab else f"node {node_id}"

    def record(self, server_round: int) -> RoundRecord:
        while len(self.rounds) < server_round:
            self.rounds.append(RoundRecord(len(self.rounds) + 1))
        return self.rounds[server_round - 1]

    def consider(self, state_round: int, arrays: ArrayRecord, lab_val: dict[str, float],
                 counts: dict[str, int]) -> float:
        """Pool labs' val MAEs of the global state after ``state_round`` (0: the start);
        keep it if it is the best so far. Returns the pooled MAE."""
        total = sum(counts.values())
        pooled = sum(lab_val[k] * counts[k] for k in lab_val) / total if total else math.nan
        if math.isfinite(pooled) and pooled < self.best_val - 1e-12:
            self.best_val, self.best_round, self.best_arrays = pooled, state_round, arrays
        return pooled


def screen_reply(msg: Message, ledger: Ledger) -> str | None:
    """Why ``msg`` must not be averaged, or None if it may."""
    node = msg.metadata.src_node_id
    if msg.has_error():
        return f"error reply: {msg.error.reason}"
    lab = ledger.labs.get(node)
    if lab is None:
        return "reply from a node that did not join"
    content = msg.content
    if len(content.array_records) != 1 or len(content.metric_records) != 1:
        return "reply does not hold exactly one ArrayRecord and one MetricRecord"
    arrays = next(iter(content.array_records.values()))
    metrics = next(iter(content.metric_records.values()))
    if set(arrays.keys()) != set(ledger.expected_keys):
        return "tensors do not match the module schema"
    for name, array in arrays.items():
        values = array.numpy()
        if tuple(values.shape) != ledger.expected_keys[name]:
            return f"tensor {name} has shape {tuple(values.shape)}"
        if not np.all(np.isfinite(values)):
            return f"non-finite values (NaN/inf) in tensor {name}"
    if metrics.get(NUM_EXAMPLES) != lab.sizes["train"]:
        return (f"claims {metrics.get(NUM_EXAMPLES)} examples but signed "
                f"{lab.sizes['train']} train records")
    return None


class LabFedAvg(FedAvg):
    """Flower's FedAvg (weighted by train-set size), addressed to the joined labs only."""

    def __init__(self, ledger: Ledger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger = ledger

    def _targets(self, grid: Grid) -> list[int]:
        online = set(grid.get_node_ids())
        return sorted(n for n in self.ledger.labs if n in online)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        targets = self._targets(grid)
        rec = self.ledger.record(server_round)
        for node in sorted(set(self.ledger.labs) - set(targets)):
            rec.excluded.append({"lab": self.ledger.name(node), "reason": "not connected"})
        config["server-round"] = server_round
        return self._construct_messages(self._record(arrays, config), targets, "train")

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        if self.fraction_evaluate == 0.0:
            return []  # labs report the global val MAE inside each training round
        config["server-round"] = server_round
        return self._construct_messages(self._record(arrays, config), self._targets(grid),
                                        "evaluate")

    def _record(self, arrays: ArrayRecord, config: ConfigRecord) -> Any:
        from flwr.app import RecordDict

        return RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})


class Screened(Strategy):
    """Screens replies (see the module docstring), then lets the wrapped strategy average."""

    def __init__(self, inner: Strategy, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger

    def summary(self) -> None:
        log(INFO, "\t├──> MoMa screening: drop-outs, schema, NaN/inf, sample counts")
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self.ledger.sent[server_round] = arrays
        self.ledger.targets[server_round] = [m.metadata.dst_node_id for m in messages]
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        rec = self.ledger.record(server_round)
        by_node: dict[int, Message] = {}
        stray: list[str] = []  # the SuperLink answers for an unavailable node as itself
        for msg in replies:
            if msg.metadata.src_node_id in self.ledger.labs:
                by_node[msg.metadata.src_node_id] = msg
            else:
                stray.append(str(msg.error.reason) if msg.has_error() else "a stranger's reply")
        good: list[Message] = []
        for node in self.ledger.targets.get(server_round, []):
            reply = by_node.get(node)
            if reply is None:
                detail = f": {stray[0]}" if stray else ""
                reason: str | None = f"no reply (dropped out or timed out{detail})"
            else:
                reason = screen_reply(reply, self.ledger)
            if reason is None and reply is not None:
                good.append(reply)
                rec.averaged.append(self.ledger.name(node))
            else:
                log(WARNING, "round %d: leaving out %s: %s", server_round,
                    self.ledger.name(node), reason)
                rec.excluded.append({"lab": self.ledger.name(node), "reason": str(reason)})
        # Every reply carries the lab's val MAE of the global state it received.
        lab_val: dict[str, float] = {}
        counts: dict[str, int] = {}
        for msg in replies:
            if msg.has_error() or msg.metadata.src_node_id not in self.ledger.labs:
                continue
            metrics = next(iter(msg.content.metric_records.values()), None)
            value = metrics.get("global_val_mae") if metrics is not None else None
            if isinstance(value, int | float) and math.isfinite(value):
                name = self.ledger.name(msg.metadata.src_node_id)
                lab_val[name] = float(value)
                counts[name] = int(metrics.get("n_val", 0))  # type: ignore[union-attr,arg-type]
        rec.lab_val_mae = lab_val
        if lab_val and server_round in self.ledger.sent:
            rec.global_val_mae = self.ledger.consider(server_round - 1,
                                                      self.ledger.sent[server_round],
                                                      lab_val, counts)
        if len(good) < self.ledger.min_labs:
            log(WARNING, "round %d: only %d usable replies (min %d): global module unchanged",
                server_round, len(good), self.ledger.min_labs)
            rec.excluded.append({"lab": "*", "reason": f"only {len(good)} usable replies, "
                                 f"fewer than min-labs {self.ledger.min_labs}: not averaged"})
            return None, None
        arrays, metrics = self.inner.aggregate_train(server_round, good)
        if arrays is not None:
            arrays = _repair_batchnorm(arrays)
            rec.updated = True
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        return None


def _repair_batchnorm(arrays: ArrayRecord) -> ArrayRecord:
    """Keep BatchNorm variances positive: DP noise on an averaged running variance can push it
    below zero, which would make every prediction NaN."""
    from flwr.app import Array

    out = {}
    for key, array in arrays.items():
        values = array.numpy()
        if key.endswith("running_var"):
            values = np.maximum(values, 1e-5).astype(values.dtype)
        out[key] = Array(np.ascontiguousarray(values))
    return ArrayRecord(out)
