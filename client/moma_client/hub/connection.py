"""Channels to a hub and the one place where a refused RPC becomes a one-line error.

TLS is the default: the hub's certificate is checked against ``--ca`` (or the system roots),
and a client certificate and key can be presented for mutual TLS. Plaintext needs an explicit
``--insecure``, because the gRPC layer is what keeps a listing or a download from being read or
changed on the way (the signatures still protect module bytes, but not the privacy of what a
client asks for).

Several hubs replicas can be given as one address, ``a:50051,b:50051,c:50051``: the channel
resolves every name, spreads calls over the replicas (gRPC's ``round_robin`` policy), stops
picking one that is down, and retries read-only calls that failed with UNAVAILABLE on another
(uploads resume by their own logic: GetUploadStatus, then the missing bytes). TLS checks each
replica's certificate against the *first* host name, so give every replica a certificate for
that name (or put them behind one TLS-terminating balancer).

Observers (audit logging, the privacy test) can add client interceptors to every channel this
module opens with :func:`observe_channels`; the client itself never needs them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from moma.errors import ExitCode, MomaError

T = TypeVar("T")

RPC_TIMEOUT_S = 60.0
"""Deadline of one unary call; streams get a deadline proportional to their size."""

_OBSERVERS: list[Any] = []
_OBSERVERS_LOCK = threading.Lock()


class HubError(MomaError):
    """An RPC the hub refused or could not be reached for: its status code and message."""

    exit_code = ExitCode.NETWORK

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code
        if code == grpc.StatusCode.NOT_FOUND:
            self.exit_code = ExitCode.NOT_FOUND
        elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            self.exit_code = ExitCode.TRUST
        elif code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
            self.exit_code = ExitCode.BAD_MODULE


RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
"""Codes that mean "the connection broke", after which a resumable transfer tries again."""


@dataclass(frozen=True)
class Transport:
    """How to reach a hub: address and TLS material (or an explicit plaintext choice)."""

    address: str
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        parts = self.address.split(",") if self.address else [""]
        for part in parts:
            if not part or ":" not in part or not part.rsplit(":", 1)[1].isdigit():
                raise MomaError(f"hub address {part!r} is not host:port: pass e.g. --hub "
                                "hub.example.org:50051, or several replicas as a:50051,b:50051")
        if self.insecure and (self.ca or self.client_cert or self.client_key):
            raise MomaError("--insecure with TLS files: choose one (drop --insecure to use TLS)")
        if bool(self.client_cert) != bool(self.client_key):
            raise MomaError("mutual TLS needs both --client-cert and --client-key")


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise MomaError(f"cannot read {what} {path}: {exc.strerror}: check the path") from None


READ_ONLY_METHODS = {
    "moma.hub.v1.ModuleService": ("GetHubInfo", "ListModules", "GetCard", "Download",
                                  "GetUploadStatus"),
}
"""Calls that are safe to send again to another replica (they change nothing)."""


def _split(part: str) -> tuple[str, int]:
    host, port = part.rsplit(":", 1)
    return host.strip("[]"), int(port)


def replica_target(address: str) -> tuple[str, list[tuple[str, Any]]]:
    """gRPC target and channel options for ``a:p,b:p,...`` (several replicas of one hub)."""
    endpoints: list[str] = []
    family = ""
    for part in address.split(","):
        host, port = _split(part)
        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise MomaError(f"cannot resolve hub replica {host!r}: {exc.strerror or exc}: "
                                "check the --hub list") from None
            ips = sorted({str(info[4][0]) for info in infos})
        for ip in ips:
            version = ipaddress.ip_address(ip).version
            family = family or f"ipv{version}"
            if f"ipv{version}" == family:
                endpoints.append(f"[{ip}]:{port}" if version == 6 else f"{ip}:{port}")
    config = {"loadBalancingConfig": [{"round_robin": {}}],
              "methodConfig": [{
                  "name": [{"service": svc, "method": m}
                           for svc, methods in READ_ONLY_METHODS.items() for m in methods],
                  "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.2s",
                                  "maxBackoff": "2s", "backoffMultiplier": 2,
                                  "retryableStatusCodes": ["UNAVAILABLE"]}}]}
    first_host = _split(address.split(",")[0])[0]
    options: list[tuple[str, Any]] = [("grpc.service_config", json.dumps(config)),
                                      ("grpc.enable_retries", 1),
                                      ("grpc.ssl_target_name_override", first_host),
                                      ("grpc.default_authority", first_host)]
    return f"{family}:{','.join(endpoints)}", options


def open_channel(transport: Transport) -> grpc.Channel:
    """A channel to the hub (TLS unless ``insecure``), with any registered observers."""
    target, options = transport.address, list[tuple[str, Any]]()
    if "," in transport.address:
        target, options = replica_target(transport.address)
    if transport.insecure:
        channel = grpc.insecure_channel(target, options=options)
    else:
        credentials = grpc.ssl_channel_credentials(
            _read(transport.ca, "CA certificate"), _read(transport.client_key, "client key"),
            _read(transport.client_cert, "client certificate"))
        channel = grpc.secure_channel(target, credentials, options=options)
    with _OBSERVERS_LOCK:
        observers = list(_OBSERVERS)
    return grpc.intercept_channel(channel, *observers) if observers else channel


@contextlib.contextmanager
def observe_channels(*interceptors: Any) -> Iterator[None]:
    """Add client interceptors to every channel opened inside the ``with`` block."""
    with _OBSERVERS_LOCK:
        _OBSERVERS.extend(interceptors)
    try:
        yield
    finally:
        with _OBSERVERS_LOCK:
            for interceptor in interceptors:
                _OBSERVERS.remove(interceptor)


def describe(exc: grpc.RpcError, what: str, address: str) -> HubError:
    """A one-line error for a failed RPC: what was attempted, the status and the hub's reason."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    detail = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    name = code.name if code is not None else "ERROR"
    if code == grpc.StatusCode.UNAVAILABLE:
        detail = (f"{detail or 'unreachable'} (is the hub running at {address}, with matching TLS "
                  "options: --ca for TLS, --insecure for a plaintext hub on loopback?)")
    return HubError(f"{what}: {name}: {' '.join(str(detail).split())}", code)


def call(func: Callable[..., T], request: Any, what: str, address: str,
         timeout: float = RPC_TIMEOUT_S) -> T:
    """Run one unary RPC; a refusal becomes a :class:`HubError`."""
    try:
        return func(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise describe(exc, what, address) from None


__all__ = ["RETRYABLE", "RPC_TIMEOUT_S", "HubError", "Transport", "call", "describe",
           "observe_channels", "open_channel"]
