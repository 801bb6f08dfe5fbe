"""``moma-client modules list|show|pull --hub ADDR``: a hub's modules, verified.

``list`` and ``show`` keep their local form (``modules list FOLDER``, ``modules show DIR``)
and read a hub instead when given ``--hub`` and no folder; ``pull`` downloads approved modules
into the local cache (``$MOMA_CACHE/modules/<sha256>/``), verified, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from moma.errors import MomaError
from moma.proto.hub.v1 import hub_pb2
from moma.safe_text import for_markup
from moma.trust.manifest import verify_countersignature
from moma_client.cli import modules as local
from moma_client.cli.common import err, print_json, step
from moma_client.cli.hub_options import Ca, ClientCert, ClientKey, HubKey, Insecure, connect, line
from moma_client.hub.cache import ModuleCache
from moma_client.hub.client import HubClient, state_name, summary_dict

OptionalHub = Annotated[str | None, typer.Option("--hub", help="Read this hub (host:port) instead of a local folder.")]


def _client(hub: str, hub_key: str | None, ca: Path | None, client_cert: Path | None,
            client_key: Path | None, insecure: bool) -> HubClient:
    return connect(hub, hub_key, ca, client_cert, client_key, insecure)


def list_command(
    folder: Annotated[Path | None, typer.Argument(help="Folder with module folders (local listing).")] = None,
    hub: OptionalHub = None,
    backbone: Annotated[str, typer.Option(help="Hub: only this backbone.")] = "",
    base: Annotated[str, typer.Option(help="Hub: only modules trained from this base (sha256).")] = "",
    kind: Annotated[str, typer.Option(help="Hub: only full or adapter modules.")] = "",
    task: Annotated[str, typer.Option(help="Hub: only modules of this task.")] = "",
    state: Annotated[list[str], typer.Option(help="Hub: states to list (repeatable; default approved).")] = [],  # noqa: B006
    hub_key: HubKey = None, ca: Ca = None, client_cert: ClientCert = None,
    client_key: ClientKey = None, insecure: Insecure = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the modules below FOLDER, or the modules of a hub (--hub)."""
    if folder is not None:
        local.list_command(folder, json_output)
        return
    if hub is None:
        raise MomaError("modules list needs a FOLDER or --hub ADDR")
    with _client(hub, hub_key, ca, client_cert, client_key, insecure) as client:
        rows = list(client.list_modules(backbone=backbone, base_sha256=base, kind=kind,
                                        task=task, states=tuple(state) or ("approved",)))
    if json_output:
        print_json([summary_dict(r) for r in rows])
        return
    for r in rows:
        line(f"{r.module_id[:12]}  {state_name(r.state):8s} {r.backbone:7s} {r.kind:8s} "
                  f"{r.task:28s} {r.lab_name or r.contributor_key_id}")
    err.print(f"{len(rows)} modules on hub {for_markup(client.hub_id)}")


def show_command(
    module: Annotated[str, typer.Argument(help="Module folder, or with --hub a module id (sha256).")],
    hub: OptionalHub = None,
    hub_key: HubKey = None, ca: Ca = None, client_cert: ClientCert = None,
    client_key: ClientKey = None, insecure: Insecure = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a module's card (local folder, or a hub module with its verified signatures)."""
    if hub is None:
        local.show_command(Path(module), json_output)
        return
    with _client(hub, hub_key, ca, client_cert, client_key, insecure) as client:
        hub_card = client.get_card(module, require_approved=False)
    record = hub_card.record
    cs = record.countersignature
    if cs is not None:  # approval, or a signed revocation notice: either must verify
        verify_countersignature(cs, record.signed, client.hub_key,
                                accepted_states=("approved", "revoked"))
    approved = (hub_card.summary.state == hub_pb2.MODULE_STATE_APPROVED and cs is not None
                and cs.state == "approved")
    payload: dict[str, Any] = {
        "module": summary_dict(hub_card.summary), "card": record.manifest.card,
        "verified": {"contributor_signature": True,
                     "contributor_key_id": record.manifest.contributor_key_id,
                     "hub_countersignature": approved,
                     "countersigned_state": cs.state if cs else None,
                     "countersigned_at": cs.time if cs else None},
    }
    if json_output:
        print_json(payload)
        return
    s = hub_card.summary
    line(f"module {s.module_id} on hub {client.hub_id}: {state_name(s.state)}")
    line(f"  contributor {s.lab_name or '?'} (key {record.manifest.contributor_key_id}): "
              "signature verified")
    if approved and cs is not None:
        line(f"  approved {cs.time}: hub countersignature verified with the pinned key")
    for key, value in record.manifest.card.items():
        line(f"{key}: {value}")


def pull_command(
    module_ids: Annotated[list[str], typer.Argument(help="Module ids (sha256) to download.")],
    hub: Annotated[str, typer.Option("--hub", envvar="MOMA_HUB", help="Hub address host:port.")],
    hub_key: HubKey = None, ca: Ca = None, client_cert: ClientCert = None,
    client_key: ClientKey = None, insecure: Insecure = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Download approved modules into the local cache, verified (cached ones move no bytes)."""
    cache = ModuleCache()
    results: list[dict[str, Any]] = []
    with _client(hub, hub_key, ca, client_cert, client_key, insecure) as client:
        for module_id in module_ids:
            hub_card = client.get_card(module_id)
            with step(f"pull {module_id[:12]}", 1) as update:
                fetched = cache.fetch(client, module_id, expected=hub_card.record,
                                      on_bytes=update)
                if fetched.from_cache:
                    update(1, 1)
            results.append({"module_id": module_id, "name": fetched.module.card.name,
                            "path": str(fetched.path), "from_cache": fetched.from_cache,
                            "downloaded_bytes": fetched.downloaded_bytes})
    if json_output:
        print_json(results)
        return
    for r in results:
        how = "cached" if r["from_cache"] else f"downloaded {r['downloaded_bytes']} bytes"
        line(f"{r['module_id'][:12]}  {r['name']:28s} {how}: {r['path']}")


def extend_modules_app(app: typer.Typer) -> None:
    """Replace the local-only ``list``/``show`` with these (which keep the local form) and add
    ``pull``."""
    app.registered_commands = [c for c in app.registered_commands
                               if c.name not in ("list", "show", "pull")]
    app.command("list")(list_command)
    app.command("show")(show_command)
    app.command("pull")(pull_command)
