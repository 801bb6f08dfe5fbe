"""Options every hub command shares (address, TLS, hub key pin) and how they become a client."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from moma.cli.options import Ca, ClientCert, ClientKey, HubAddr, Insecure
from moma.safe_text import clean, for_markup
from moma_client.cli.common import err, out, step
from moma_client.cli.options import with_options_of

if TYPE_CHECKING:
    from moma_client.hub.client import HubClient

HubKey = Annotated[str | None, typer.Option("--hub-key", envvar="MOMA_HUB_KEY", help="The hub's public key (base64 or PEM file) to pin; default: trust on first use, remembered in known_hubs.json ($MOMA_KNOWN_HUBS).")]

__all__ = ["Ca", "ClientCert", "ClientKey", "Connection", "HubAddr", "HubKey", "Insecure",
           "connect", "connection_options", "hub_candidate_folders", "line", "take_connection",
           "warn", "with_connection_options"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Connection:
    """How to reach and trust a hub: the key pin and the TLS material every hub command takes."""

    hub_key: str | None = None
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    insecure: bool = False


def connection_options(hub_key: HubKey = None, ca: Ca = None, client_cert: ClientCert = None,
                       client_key: ClientKey = None, insecure: Insecure = False) -> Connection:
    """The connection options, declared once: commands take them with
    :func:`with_connection_options` and read them back with :func:`take_connection`."""
    return Connection(hub_key, ca, client_cert, client_key, insecure)


CONNECTION = tuple(inspect.signature(connection_options).parameters)


def with_connection_options(func: F) -> F:
    """Give a command the hub connection options; they reach it in its ``**kwargs``."""
    return with_options_of(connection_options, CONNECTION)(func)


def take_connection(kwargs: dict[str, Any]) -> Connection:
    """Remove the connection options from a command's ``**kwargs`` and return them as one."""
    return connection_options(**{name: kwargs.pop(name) for name in CONNECTION if name in kwargs})


def line(text: str) -> None:
    """One result line on stdout: never wrapped (ids stay copyable), no rich markup, no
    control characters (its fields come from contributors)."""
    out.print(clean(text), soft_wrap=True, markup=False, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {for_markup(message)}", soft_wrap=True)


def connect(hub: str, connection: Connection) -> HubClient:
    """Open a channel, fetch the hub's identity and pin its key (or refuse)."""
    from moma_client.hub.client import HubClient
    from moma_client.hub.connection import Transport
    from moma_client.hub.pinning import parse_hub_key

    c = connection
    transport = Transport(hub, ca=c.ca, client_cert=c.client_cert, client_key=c.client_key,
                          insecure=c.insecure)
    expected = parse_hub_key(c.hub_key) if c.hub_key else None
    return HubClient(transport, hub_key=expected, warn=warn)


def hub_candidate_folders(hub: str, connection: Connection, *, backbone: str, kind: str, exclude_task: str | None) -> list[Path]:
    """Compose's candidates from a hub, as cache folders for the local code path.

    Sends only GetHubInfo, ListModules (backbone, kind), GetCard and Download (module ids).
    """
    from moma_client.hub.cache import ModuleCache
    from moma_client.hub.candidates import fetch_candidates

    cache = ModuleCache()
    with connect(hub, connection) as client, \
            step(f"hub {client.hub_id}", 1) as update:
        found = fetch_candidates(client, cache, backbone=backbone, kind=kind,
                                 exclude_task=exclude_task,
                                 on_module=lambda n, total, _card: update(n, total))
    for module_id, why in found.skipped:
        err.print(clean(f"hub: skipped {module_id[:12]}: {why}"), soft_wrap=True, markup=False)
    err.print(f"hub {clean(client.hub_id)}: {len(found.folders)} approved {kind} {backbone} "
              f"candidates verified; {found.downloads} downloaded ({found.downloaded_bytes} bytes), "
              f"{len(found.folders) - found.downloads} from the cache {cache.root}",
              soft_wrap=True, markup=False)
    return found.folders
