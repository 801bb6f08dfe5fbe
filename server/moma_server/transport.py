"""Transport security settings of ``moma-hub serve`` (light: no model code imported).

Plaintext is only an explicit choice, and only on loopback unless forced: a module's bytes
and an operator's requests are signed, but who asks for which module is still worth hiding,
and a plaintext hop is where a chunk gets altered.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

from moma.errors import MomaError


@dataclass
class TlsFiles:
    """Server cert and key (PEM); with ``client_ca``, clients must show a cert that CA signed."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: Path, what: str) -> bytes:
            try:
                return path.read_bytes()
            except OSError as exc:
                raise MomaError(f"cannot read TLS {what} {path}: {exc.strerror}") from None

        pair = (read(self.key, "key"), read(self.cert, "certificate"))
        ca = read(self.client_ca, "client CA") if self.client_ca else None
        return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                           require_client_auth=ca is not None)


def is_loopback(listen: str) -> bool:
    """True if ``host:port`` names a loopback address (127.0.0.0/8, ::1, localhost)."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
