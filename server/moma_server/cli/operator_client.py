"""What every operator command shares: the connection, request signing and output.

The operator CLI talks to a running hub over gRPC like any client (it never opens the
database), so curation works from any machine holding an operator key, and the hub stays
the only writer of its stores and audit log. grpc, protobuf and the key library are imported
when a command connects, not when the options are declared: ``moma-hub --help`` and usage
mistakes stay fast (benchmarks/bench_cli_startup.py).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from moma.cli.options import DEFAULT_HUB
from moma.errors import ExitCode, MomaError
from moma.safe_text import json_text

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

    from moma.proto.hub.v1 import hub_pb2_grpc

M = TypeVar("M", bound="Message")

HubOpt = typer.Option(DEFAULT_HUB, "--hub", envvar="MOMA_HUB",
                      help="Hub address host:port.")
KeyOpt = typer.Option(..., "--operator-key", envvar="MOMA_OPERATOR_KEY",
                      help="Operator private key (PEM, mode 0600) configured on the hub.")
CaOpt = typer.Option(None, "--ca", help="CA certificate (PEM) that signed the hub's TLS certificate (default: system roots).")
ClientCertOpt = typer.Option(None, "--client-cert", help="Client certificate for mutual TLS.")
ClientKeyOpt = typer.Option(None, "--client-key", help="Client key for mutual TLS.")
InsecureOpt = typer.Option(False, "--insecure", help="Plaintext (a hub on loopback only).")
ReadKeyOpt = typer.Option(None, "--operator-key", envvar="MOMA_OPERATOR_KEY",
                          help="Not needed: listings and cards are public (accepted for "
                          "symmetry with the other commands).")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


class HubCallError(MomaError):
    """An RPC the hub refused: its status code and message."""

    exit_code = ExitCode.NETWORK


def channel(hub: str, *, insecure: bool, ca_cert: Path | None, client_cert: Path | None,
            client_key: Path | None) -> grpc.Channel:
    """A channel to ``hub``: TLS (system roots or ``ca_cert``) unless ``insecure``."""
    import grpc

    if insecure:
        return grpc.insecure_channel(hub)
    try:
        ca = ca_cert.read_bytes() if ca_cert else None
        cert = client_cert.read_bytes() if client_cert else None
        key = client_key.read_bytes() if client_key else None
    except OSError as exc:
        raise MomaError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
    return grpc.secure_channel(hub, grpc.ssl_channel_credentials(ca, key, cert))


def call(func: Callable[..., M], request: Any, what: str) -> M:
    """Run an RPC; a refusal becomes a one-line :class:`HubCallError`."""
    import grpc

    try:
        return func(request, timeout=60)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        name = code.name if code is not None else "ERROR"
        if code == grpc.StatusCode.UNAVAILABLE:
            detail = f"{detail} (is the hub running at that address, with matching TLS options?)"
        raise HubCallError(f"{what}: {name}: {detail}") from None


@dataclass
class OperatorClient:
    """Stubs plus the operator key that signs every OperatorService request."""

    module_stub: hub_pb2_grpc.ModuleServiceStub
    operator_stub: hub_pb2_grpc.OperatorServiceStub
    key_path: Path | None
    hub_id: str = ""

    @classmethod
    def connect(cls, hub: str, key_path: Path | None, *, insecure: bool, ca_cert: Path | None = None,
                client_cert: Path | None = None,
                client_key: Path | None = None) -> OperatorClient:
        from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc

        chan = channel(hub, insecure=insecure, ca_cert=ca_cert, client_cert=client_cert,
                       client_key=client_key)
        client = cls(hub_pb2_grpc.ModuleServiceStub(chan), hub_pb2_grpc.OperatorServiceStub(chan),
                     key_path)
        info = call(client.module_stub.GetHubInfo, hub_pb2.GetHubInfoRequest(), f"hub {hub}")
        client.hub_id = info.hub_id
        return client

    def signed(self, request: M, method: str) -> M:
        """``request`` with a fresh OperatorAuth for ``method`` (e.g. "ApproveModule")."""
        from moma.proto.hub.v1 import hub_pb2
        from moma.trust.keys import key_id, load_private_key, sign
        from moma.trust.operator_auth import operator_auth_payload

        if self.key_path is None:
            raise MomaError(f"{method} needs --operator-key (or MOMA_OPERATOR_KEY): the "
                            "private key of an operator configured on the hub")
        private = load_private_key(self.key_path)
        kid = key_id(private.public_key())
        request.ClearField("auth")
        body = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        nonce, now = secrets.token_hex(16), int(time.time())
        payload = operator_auth_payload(method=f"/moma.hub.v1.OperatorService/{method}",
                                        body_sha256=body, nonce=nonce, time_unix=now,
                                        key_id=kid, hub_id=self.hub_id)
        request.auth.CopyFrom(hub_pb2.OperatorAuth(key_id=kid, nonce=nonce, time=now,
                                                   signature=sign(private, payload)))
        return request

    def operator(self, method: str, request: M) -> Any:
        """Sign and send one OperatorService request."""
        func = getattr(self.operator_stub, method)
        return call(func, self.signed(request, method), method)


def connect(hub: str, key: Path | None, insecure: bool, ca_cert: Path | None, client_cert: Path | None,
            client_key: Path | None) -> OperatorClient:
    return OperatorClient.connect(hub, key, insecure=insecure, ca_cert=ca_cert,
                                  client_cert=client_cert, client_key=client_key)


def to_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready dict; bytes as base64 (proto3 JSON mapping), all fields shown."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True)


def print_json(obj: Any) -> None:
    typer.echo(json_text(obj))


def env_default(name: str) -> str | None:
    return os.environ.get(name)
