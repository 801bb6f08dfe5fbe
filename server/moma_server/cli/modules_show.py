"""``moma-hub modules show``: one module's card, manifest, countersignature and probe review."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from moma.proto.hub.v1 import hub_pb2
from moma_server.cli import operator_client as oc
from moma_server.cli.resolve_id import resolve_module_id


def show(
    module_id: str = typer.Argument(..., help="Module id (sha256, or a unique prefix of 6+ hex digits)."),
    hub: str = oc.HubOpt, operator_key: Path | None = oc.ReadKeyOpt, ca_cert: Path | None = oc.CaOpt,
    client_cert: Path | None = oc.ClientCertOpt, client_key: Path | None = oc.ClientKeyOpt,
    insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
) -> None:
    """Show a module in any state (the card, who signed it, the hub's countersignature)."""
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
    typer.echo(f"module {m.module_id}\n  state {hub_pb2.ModuleState.Name(m.state)[13:].lower()}"
               f" (since {m.state_changed_at})\n  lab {m.lab_name} key {m.contributor_key_id}\n"
               f"  {m.backbone} {m.kind} task {m.task} ({m.property}, {m.unit}) {m.size} bytes")
    if response.HasField("countersignature"):
        cs = response.countersignature
        typer.echo(f"  countersigned {cs.state} at {cs.time} by hub key {cs.hub_key_id}")
    if response.HasField("probe"):
        typer.echo(probe_line(response.probe))
    typer.echo(json.dumps(card, indent=2, sort_keys=True))


def probe_line(probe: hub_pb2.ProbeSummary) -> str:
    """The hub's probe review in one line (what an operator reads before approving)."""
    text = (f"  probe check {probe.status} on {probe.probes} probes "
            f"(set {probe.probe_set_sha256[:12]}): predictions {probe.pred_min:.4g}.."
            f"{probe.pred_max:.4g}, mean {probe.pred_mean:.4g}, std {probe.pred_std:.4g}, "
            f"{probe.outside_share:.0%} outside the card's range")
    return text + (f"\n  probe reason: {probe.reason}" if probe.reason else "")
