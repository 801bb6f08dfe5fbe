"""Options both programs spell the same way: reaching a hub over TLS, and JSON output.

``moma-client`` (hub commands, compose) and ``moma-hub`` (operator commands) connect to a hub
with the same flags: ``--hub``, ``--ca``, ``--client-cert``, ``--client-key``, ``--insecure``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_HUB = "127.0.0.1:50051"

HubAddr = Annotated[str, typer.Option("--hub", envvar="MOMA_HUB", help="Hub address host:port.")]
Ca = Annotated[Path | None, typer.Option("--ca", help="CA certificate (PEM) that signed the hub's TLS certificate (default: system roots).")]
ClientCert = Annotated[Path | None, typer.Option("--client-cert", help="Client certificate (PEM) for mutual TLS.")]
ClientKey = Annotated[Path | None, typer.Option("--client-key", help="Client TLS private key (PEM) for mutual TLS.")]
Insecure = Annotated[bool, typer.Option("--insecure", help="Plaintext gRPC (a hub on loopback only); TLS is the default.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
