"""``moma-hub modules approve|reject|revoke``: the curation table's commands, one per row.

Each decision is written to the hub's audit log; see :mod:`moma_server.curation`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from moma.safe_text import clean
from moma_server.cli import operator_client as oc
from moma_server.curation import Transition


def command_for(transition: Transition) -> Callable[..., None]:
    """The typer command of ``transition`` (its text option named after the request field)."""
    help_text = ("A note for the audit log." if transition.text_field == "note"
                 else "Why, for the audit log, the lab and users.")

    def command(
        module_id: str = typer.Argument(..., help="Module id (sha256, or a unique prefix of "
                                        "6+ hex digits)."),
        text: str = typer.Option("", f"--{transition.text_field}", help=help_text),
        hub: str = oc.HubOpt, operator_key: Path = oc.KeyOpt, ca_cert: Path | None = oc.CaOpt,
        client_cert: Path | None = oc.ClientCertOpt,
        client_key: Path | None = oc.ClientKeyOpt,
        insecure: bool = oc.InsecureOpt, as_json: bool = oc.JsonOpt,
    ) -> None:
        from moma.proto.hub.v1 import hub_pb2
        from moma_server.cli.resolve_id import resolve_module_id

        client = oc.connect(hub, operator_key, insecure, ca_cert, client_cert, client_key)
        module_id = resolve_module_id(client, module_id)
        request_type = getattr(hub_pb2, f"{transition.rpc}Request")
        request = request_type(module_id=module_id, **{transition.text_field: text})
        response = client.operator(transition.rpc, request)
        if as_json:
            oc.print_json(oc.to_dict(response))
            return
        state = hub_pb2.ModuleState.Name(response.module.state)[13:].lower()
        typer.echo(f"module {clean(response.module.module_id)} is now {state}")

    command.__name__ = transition.verb
    command.__doc__ = transition.summary
    return command
