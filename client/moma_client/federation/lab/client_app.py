"""The Flower ClientApp a lab's SuperNode runs: handshake (query), train and evaluate.

Handlers are thin: they unpack Flower records, call
:mod:`moma_client.federation.lab.training` (the
same ``prepare``/``fit`` code as ``moma-client train``) and pack the answer. An exception here
becomes an error reply that the ServerApp records against this lab, with its message.
"""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from moma.modules.card import TargetNormalizer
from moma_client.federation.lab.setup import lab_private_key, open_lab
from moma_client.federation.lab.training import evaluate_candidates, train_round
from moma_client.federation.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    NUM_EXAMPLES,
    PUBLIC_KEY_KEY,
    SIGNATURE_KEY,
    STATEMENT_KEY,
    RunSpec,
    b64,
    make_join_statement,
)
from moma_client.federation.wire import to_wire

app = ClientApp()


def _spec(context: Context) -> RunSpec:
    return RunSpec.from_run_config(dict(context.run_config))


def _normalizer(config: ConfigRecord) -> TargetNormalizer:
    return TargetNormalizer(mean=float(config["norm-mean"]),  # type: ignore[arg-type]
                            std=float(config["norm-std"]))  # type: ignore[arg-type]


def _config(msg: Message) -> ConfigRecord:
    return msg.content.config_records.get(CONFIG_KEY, ConfigRecord())


@app.query()
def join(msg: Message, context: Context) -> Message:
    """Answer the handshake with a signed statement about this lab's data (no labels)."""
    spec = _spec(context)
    lab = open_lab(dict(context.node_config), spec)
    nonce = str(_config(msg).get("nonce", ""))
    raw, signature, public = make_join_statement(
        lab_private_key(lab), nonce=nonce, prop=lab.prop, unit=lab.unit,
        dataset=lab.prepared.dataset.name, base_sha256=lab.base_sha256, sizes=lab.sizes(),
        stats=lab.train_stats())
    reply = ConfigRecord({STATEMENT_KEY: raw.decode("utf-8"), SIGNATURE_KEY: b64(signature),
                          PUBLIC_KEY_KEY: public})
    return Message(RecordDict({CONFIG_KEY: reply}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Evaluate the received global module on val, train it locally, send the tensors back."""
    spec = _spec(context)
    lab = open_lab(dict(context.node_config), spec)
    config = _config(msg)
    state = dict(msg.content.array_records[ARRAYS_KEY].to_torch_state_dict())
    server_round = int(config.get("server-round", 1))  # type: ignore[arg-type]
    new_state, metrics = train_round(lab, spec, state, _normalizer(config), server_round)
    record: dict[str, Any] = {NUM_EXAMPLES: lab.sizes()["train"], **metrics}
    content = RecordDict({ARRAYS_KEY: ArrayRecord(to_wire(new_state)),
                          METRICS_KEY: MetricRecord(record)})
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Val and test MAE of each candidate module in the message (once, at the end)."""
    spec = _spec(context)
    lab = open_lab(dict(context.node_config), spec)
    candidates = {name: dict(record.to_torch_state_dict())
                  for name, record in msg.content.array_records.items()}
    metrics = evaluate_candidates(lab, spec, candidates, _normalizer(_config(msg)))
    record: dict[str, Any] = {NUM_EXAMPLES: lab.sizes()["val"], **metrics}
    return Message(RecordDict({METRICS_KEY: MetricRecord(record)}), reply_to=msg)
