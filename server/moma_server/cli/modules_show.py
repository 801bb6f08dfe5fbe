"""``moma-hub modules show``: one module's card, manifest, countersignature and probe review."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from moma.safe_text import clean, json_text
from moma_server.cli import operator_client as oc
from moma_server.cli.resolve_id import resolve_module_id

if TYPE_CHECKING:
    from moma.proto.hub.v1 import hub_pb2


def show(
    module_id: str = typer.Argument(..., help="Module id (sha256, or a unique prefix of 6+ hex digits)."),
    hub: str = oc.HubOpt, operator_key: Path | None = oc.ReadKeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """Show a module in any state (the card, who signed it, the hub's countersignature)."""
    from moma.proto.hub.v1 import hub_pb2

    client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
    module_id = resolve_module_id(client, module_id)
    response = oc.call(client.module_stub.GetCard, hub_pb2.GetCardRequest(module_id=module_id),
                       "GetCard")
    card = json.loads(response.card_json.decode("utf-8"))
    if as_json:
        out = oc.to_dict(response)
        out["card"] = card
        out.pop("card_json", None)
        oc.print_json(out)
        return
    m = response.module
    c = clean
    typer.echo(f"module {c(m.module_id)}\n  state "
               f"{hub_pb2.ModuleState.Name(m.state)[13:].lower()} (since {c(m.state_changed_at)})"
               f"\n  lab {c(m.lab_name)} key {c(m.contributor_key_id)}\n  {c(m.backbone)} "
               f"{c(m.kind)} task {c(m.task)} ({c(m.property)}, {c(m.unit)}) {m.size} bytes")
    if response.HasField("countersignature"):
        cs = response.countersignature
        typer.echo(f"  countersigned {c(cs.state)} at {c(cs.time)} by hub key "
                   f"{c(cs.hub_key_id)}")
    if response.HasField("probe"):
        typer.echo(probe_line(response.probe))
    typer.echo(json_text(card))


def probe_line(probe: hub_pb2.ProbeSummary) -> str:
    """The hub's probe review in one line (what an operator reads before approving); the
    reason may quote the module's card, so it is escaped."""
    text = (f"  probe check {clean(probe.status)} on {probe.probes} probes "
            f"(set {clean(probe.probe_set_sha256[:12])}): predictions {probe.pred_min:.4g}.."
            f"{probe.pred_max:.4g}, mean {probe.pred_mean:.4g}, std {probe.pred_std:.4g}, "
            f"{probe.outside_share:.0%} outside the card's range")
    return text + (f"\n  probe reason: {clean(probe.reason)}" if probe.reason else "")
