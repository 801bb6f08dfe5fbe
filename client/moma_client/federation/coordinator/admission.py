"""Which labs take part: wait for SuperNodes, then admit each one on its signed join statement.

A lab is refused (and the card says why) if it does not answer, its signature or nonce is
wrong, its data is another property or unit, it pinned another base, it reuses a lab key, or it
has too few records. A refusal is recorded, never fatal for the other labs.
"""

from __future__ import annotations

import time
from logging import INFO, WARNING

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.supercore import log

from moma_client.federation.protocol import (
    CONFIG_KEY,
    PUBLIC_KEY_KEY,
    SIGNATURE_KEY,
    STATEMENT_KEY,
    FederationError,
    JoinStatement,
    RunSpec,
    parse_join_statement,
    unb64,
)

JOIN_WAIT_SECONDS = 120.0


def wait_for_labs(grid: Grid, spec: RunSpec, expected: int) -> list[int]:
    """Node ids once ``expected`` labs (at least ``min_labs``) are connected, or what is there
    after the join wait."""
    need = max(expected, spec.min_labs)
    deadline = time.monotonic() + JOIN_WAIT_SECONDS
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= need or time.monotonic() > deadline:
            return nodes
        time.sleep(1.0)


def handshake(grid: Grid, spec: RunSpec, nodes: list[int], base_sha256: str
              ) -> tuple[dict[int, JoinStatement], list[dict[str, str]]]:
    """Ask every node to join; return accepted labs and refusals with reasons."""
    messages = [Message(RecordDict({CONFIG_KEY: ConfigRecord({"nonce": spec.nonce})}),
                        dst_node_id=n, message_type=MessageType.QUERY) for n in nodes]
    replies = {m.metadata.src_node_id: m
               for m in grid.send_and_receive(messages, timeout=spec.round_timeout)}
    accepted: dict[int, JoinStatement] = {}
    refused: list[dict[str, str]] = []
    seen_keys: set[str] = set()
    for node in nodes:
        msg = replies.get(node)
        who = f"node {node}"
        try:
            if msg is None:
                raise FederationError("no answer to the handshake")
            if msg.has_error():
                raise FederationError(f"handshake failed on the lab: {msg.error.reason}")
            cfg = msg.content.config_records[CONFIG_KEY]
            lab = parse_join_statement(str(cfg[STATEMENT_KEY]).encode("utf-8"),
                                       unb64(str(cfg[SIGNATURE_KEY])),
                                       str(cfg[PUBLIC_KEY_KEY]), spec.nonce)
            who = lab.key_id
            if lab.property != spec.property or lab.unit != spec.unit:
                raise FederationError(
                    f"data is {lab.property!r} in {lab.unit!r}, the run declares "
                    f"{spec.property!r} in {spec.unit!r}")
            if lab.base_sha256 and lab.base_sha256 != base_sha256:
                raise FederationError(
                    f"lab pinned base {lab.base_sha256[:12]}…, the run trains from "
                    f"{base_sha256[:12]}…")
            if spec.kind == "adapter" and not lab.base_sha256:
                raise FederationError("adapter run, but the lab has no base module (--base)")
            if lab.key_id in seen_keys:
                raise FederationError("a second node with the same lab key")
            if lab.sizes.get("train", 0) < 2 or lab.sizes.get("val", 0) < 1:
                raise FederationError(f"too few records (sizes {lab.sizes})")
            seen_keys.add(lab.key_id)
            accepted[node] = lab
            log(INFO, "lab %s joined: %s", lab.key_id, lab.sizes)
        except Exception as exc:  # a refusal is recorded, never fatal for the others
            log(WARNING, "refusing %s: %s", who, exc)
            refused.append({"lab": who, "reason": str(exc)})
    return accepted, refused
