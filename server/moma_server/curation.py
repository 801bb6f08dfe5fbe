"""The curation transitions, one table: what the operator service does and the CLI offers.

Curation states (DESIGN.md section 6): pending -> approved | rejected; approved -> revoked.
Each row says which RPC makes the transition, from which state to which, what the audit log
calls it, whether the hub countersigns the new state (approval, and a signed revocation
notice), and which text the operator gives (a note, or a required reason).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transition:
    """One curation decision."""

    verb: str
    """CLI command (``moma-hub modules VERB``)."""
    rpc: str
    """OperatorService method."""
    source: str
    target: str
    audit_action: str
    countersign: bool
    """Whether the hub signs the new state (clients verify it with the pinned hub key)."""
    text_field: str
    """Request field and CLI option of the operator's text."""
    text_required: bool
    summary: str
    """What the command does, for its help."""


TRANSITIONS: tuple[Transition, ...] = (
    Transition("approve", "ApproveModule", "pending", "approved", "module.approve",
               countersign=True, text_field="note", text_required=False,
               summary="Approve a pending module: the hub countersigns it and starts serving "
                       "it."),
    Transition("reject", "RejectModule", "pending", "rejected", "module.reject",
               countersign=False, text_field="reason", text_required=False,
               summary="Reject a pending module: it is never served."),
    Transition("revoke", "RevokeModule", "approved", "revoked", "module.revoke",
               countersign=True, text_field="reason", text_required=False,
               summary="Revoke an approved module: it is no longer offered or served."),
)
BY_VERB = {t.verb: t for t in TRANSITIONS}
BY_RPC = {t.rpc: t for t in TRANSITIONS}


def allowed_from(state: str) -> list[str]:
    """The verbs that apply to a module in ``state`` (for messages that say what to do)."""
    return [t.verb for t in TRANSITIONS if t.source == state]
