"""``moma-client modules list|show|pull``: local folders, or a hub's modules, verified.

``list`` and ``show`` keep their local form (``modules list FOLDER``, ``modules show DIR``)
and read a hub instead when given ``--hub`` and no folder; ``pull`` downloads approved modules
into the local cache (``$MOMA_CACHE/modules/<sha256>/``), verified, once.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from moma.atomic_io import write_bytes
from moma.errors import MomaError
from moma.safe_text import for_markup
from moma_client.cli.common import err, print_json, step
from moma_client.cli.hub_options import connect, line, take_connection, with_connection_options
from moma_client.cli.modules import list_local, show_local

if TYPE_CHECKING:
    from moma_client.hub.client import HubClient

OptionalHub = Annotated[str | None, typer.Option("--hub", help="Read this hub (host:port) instead of a local folder.")]


@with_connection_options
def list_command(
    folder: Annotated[Path | None, typer.Argument(help="Folder with module folders (local listing).")] = None,
    hub: OptionalHub = None,
    backbone: Annotated[str, typer.Option(help="Hub: only this backbone.")] = "",
    base: Annotated[str, typer.Option(help="Hub: only modules trained from this base (sha256).")] = "",
    kind: Annotated[str, typer.Option(help="Hub: only full or adapter modules.")] = "",
    task: Annotated[str, typer.Option(help="Hub: only modules of this task.")] = "",
    state: Annotated[list[str], typer.Option(help="Hub: states to list (repeatable; default approved).")] = [],  # noqa: B006
    json_output: Annotated[bool, typer.Option("--json")] = False,
    **connection: Any,
) -> None:
    """List the modules below FOLDER, or the modules of a hub (--hub)."""
    from moma_client.hub.client import state_name, summary_dict

    if folder is not None:
        list_local(folder, json_output)
        return
    if hub is None:
        raise MomaError("modules list needs a FOLDER or --hub ADDR")
    with connect(hub, take_connection(connection)) as client:
        rows = list(client.list_modules(backbone=backbone, base_sha256=base, kind=kind,
                                        task=task, states=tuple(state) or ("approved",)))
        cards = {r.module_id: _card_facts(client, r.module_id)
                 for r in rows[:MAX_CARDS_LISTED]}
    if json_output:
        print_json([{**summary_dict(r), **cards.get(r.module_id, {})} for r in rows])
        return
    line(f"{'id':12s}  {'state':8s} {'backbone':8s} {'kind':8s} {'task':28s} "
         f"{'val MAE':>9s} {'test MAE':>9s} {'n train':>7s}  unit  lab")
    for r in rows:
        facts = cards.get(r.module_id, {})
        line(f"{r.module_id[:12]}  {state_name(r.state):8s} {r.backbone:8s} {r.kind:8s} "
             f"{r.task:28s} {fmt_metric(facts.get('val_mae'))} "
             f"{fmt_metric(facts.get('test_mae'))} {facts.get('n_train', '-')!s:>7s}  "
             f"{r.unit or '-'}  {r.lab_name or r.contributor_key_id}")
    if len(rows) > MAX_CARDS_LISTED:
        err.print(f"metrics shown for the first {MAX_CARDS_LISTED} modules (one card request "
                  "each); filter with --task/--backbone/--kind to see the rest")
    err.print(f"{len(rows)} modules on hub {for_markup(client.hub_id)}")


@with_connection_options
def show_command(
    module: Annotated[str, typer.Argument(help="Module folder, or with --hub a module id (sha256).")],
    hub: OptionalHub = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
    **connection: Any,
) -> None:
    """Show a module's card (local folder, or a hub module with its verified signatures)."""
    from moma.proto.hub.v1 import hub_pb2
    from moma.trust.countersignature import verify_countersignature
    from moma_client.hub.client import STATE_NAMES, state_name, summary_dict
    from moma_client.hub.resolve import resolve_module_id

    if hub is None:
        show_local(Path(module), json_output)
        return
    with connect(hub, take_connection(connection)) as client:
        module, resolved = resolve_module_id(client, module, tuple(STATE_NAMES))
        if resolved:
            err.print(for_markup(resolved), soft_wrap=True)
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


@with_connection_options
def pull_command(
    module_ids: Annotated[list[str], typer.Argument(help="Module ids (sha256, or a unique prefix of 6+ hex digits) to download.")],
    hub: Annotated[str, typer.Option("--hub", envvar="MOMA_HUB", help="Hub address host:port.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also copy each pulled module into OUT/<module name>/ (module.safetensors + card.json).")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
    **connection: Any,
) -> None:
    """Download approved modules into the local cache, verified (cached ones move no bytes)."""
    from moma_client.hub.cache import ModuleCache
    from moma_client.hub.resolve import resolve_module_id

    cache = ModuleCache()
    results: list[dict[str, Any]] = []
    with connect(hub, take_connection(connection)) as client:
        for given in module_ids:
            module_id, resolved = resolve_module_id(client, given)
            if resolved:
                err.print(for_markup(resolved), soft_wrap=True)
            hub_card = client.get_card(module_id)
            with step(f"pull {module_id[:12]}", 1) as update:
                fetched = cache.fetch(client, module_id, expected=hub_card.record,
                                      on_bytes=update)
                if fetched.from_cache:
                    update(1, 1)
            path = fetched.path
            if out_dir is not None:
                path = copy_module(fetched.path, out_dir, fetched.module.card.name, module_id)
            results.append({"module_id": module_id, "name": fetched.module.card.name,
                            "path": str(path), "from_cache": fetched.from_cache,
                            "downloaded_bytes": fetched.downloaded_bytes})
    if json_output:
        print_json(results)
        return
    for r in results:
        how = "cached" if r["from_cache"] else f"downloaded {r['downloaded_bytes']} bytes"
        line(f"{r['module_id'][:12]}  {r['name']:28s} {how}: {r['path']}")


MAX_CARDS_LISTED = 200


def _card_facts(client: HubClient, module_id: str) -> dict[str, Any]:
    """Validation/test MAE and training-set size from a module's verified card."""
    try:
        card = client.get_card(module_id, require_approved=False).record.manifest.card
    except MomaError:
        return {}
    metrics = card.get("metrics") or {}
    sizes = card.get("dataset_size") or {}
    return {"val_mae": metrics.get("val_mae"), "test_mae": metrics.get("test_mae"),
            "n_train": sizes.get("train")}


def fmt_metric(value: object) -> str:
    return f"{value:9.4g}" if isinstance(value, int | float) else f"{'-':>9s}"


def copy_module(source: Path, out_dir: Path, name: str, module_id: str) -> Path:
    """Copy a verified module folder to ``out_dir/<name>`` (atomic writes; a different module
    already there is an error, the same one is left as is)."""
    from moma.modules.store import CARD_FILE, MODULE_FILE

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or module_id[:12]
    target = out_dir / safe
    existing = target / MODULE_FILE
    if existing.is_file():
        if hashlib.sha256(existing.read_bytes()).hexdigest() == module_id:
            return target
        raise MomaError(f"{target} already holds another module; pass another --out")
    write_bytes(target / MODULE_FILE, (source / MODULE_FILE).read_bytes())
    write_bytes(target / CARD_FILE, (source / CARD_FILE).read_bytes())
    return target

