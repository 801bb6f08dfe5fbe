"""Integration helpers: a real ``moma-hub`` process set up the way an operator would (``init``,
``serve``, the operator CLI), test certificates, a TCP proxy that breaks connections, and a
recording client interceptor.

Nothing here imports the server's code: the hub is driven through its command line and its
gRPC port only, as a separate process, like the client meets it in production.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server.hubtest import stop_process

BIN = Path(sys.executable).parent
MOMA_HUB = str(BIN / "moma-hub")
MOMA_CLIENT = str(BIN / "moma-client")


@dataclass
class Hub:
    """``moma-hub init`` + ``moma-hub serve`` on 127.0.0.1 (a free port), plaintext or TLS."""

    root: Path
    hub_id: str = "integration-hub"
    tls: tuple[Path, Path] | None = None  # server cert, key
    client_ca: Path | None = None
    operator_tls: list[str] = field(default_factory=list)  # operator CLI TLS options
    info: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    port: int = 0

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def address(self) -> str:
        return f"{'localhost' if self.tls else '127.0.0.1'}:{self.port}"

    @property
    def operator_key(self) -> Path:
        return self.store / "operator_key.pem"

    @property
    def public_key(self) -> str:
        return str(self.info["hub_public_key"])

    def start(self, timeout: float = 120) -> Hub:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.info:
            init = subprocess.run([MOMA_HUB, "init", "--store", str(self.store), "--hub-id",
                                   self.hub_id, "--json"], capture_output=True, text=True,
                                  check=True)
            self.info = json.loads(init.stdout)
        args = [MOMA_HUB, "serve", "--store", str(self.store), "--listen", "127.0.0.1:0",
                "--operator-key", str(self.store / "operator_key.pub.pem")]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
            if self.client_ca:
                args += ["--client-ca", str(self.client_ca)]
        else:
            args.append("--insecure")
        log = (self.root / "hub.log").open("a")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = _first_line(self.proc, timeout)
        if "listening on" not in line:
            self.stop()
            log_text = (self.root / "hub.log").read_text()
            raise RuntimeError(f"hub did not start: {line!r}\n{log_text}")
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def operator(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an operator command (``keys enroll ...``, ``modules approve ...``) on this hub."""
        transport = self.operator_tls if self.tls else ["--insecure"]
        done = subprocess.run([MOMA_HUB, *args, "--hub", self.address, "--operator-key",
                               str(self.operator_key), *transport], capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"moma-hub {' '.join(args)} failed: {done.stderr}")
        return done

    def enroll(self, lab: str, public_key: Path) -> None:
        self.operator("keys", "enroll", lab, str(public_key))

    def approve(self, module_id: str) -> None:
        self.operator("modules", "approve", module_id)


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


# -- certificates --------------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test-ca")).issuer_name(_name("test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1)))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        paths[f"{name}_cert"] = folder / f"{name}.crt"
        paths[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}_key"] = folder / f"{name}.key"
        _write_key(key, paths[f"{name}_key"])
    return paths


# -- a proxy that breaks the first connection ----------------------------------------------------


class BreakingProxy:
    """TCP proxy to ``target``: the first connection is cut (``drop``) or frozen (``stall``)
    after ``limit`` bytes in one direction (``up``: client to server, ``down``: server to
    client); later connections pass through untouched."""

    def __init__(self, target_port: int, limit: int, mode: str = "drop",
                 direction: str = "up") -> None:
        self.target_port, self.limit, self.mode = target_port, limit, mode
        self.direction = direction
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tripped = threading.Event()
        self.connections = 0
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.target_port))
            limited = not self.tripped.is_set() and self.connections == 1
            up = limited and self.direction == "up"
            threading.Thread(target=self._pump, args=(client, server, up),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, limited and not up),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limited: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limited and sent + len(data) > self.limit:
                    dst.sendall(data[:max(0, self.limit - sent)])
                    self.tripped.set()
                    if self.mode == "stall":
                        while not self._closing:  # hold the connection open, forward nothing
                            if not src.recv(65536):
                                break
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()


# -- recording interceptor ------------------------------------------------------------------------


@dataclass
class RecordedCall:
    method: str
    request: bytes
    metadata: Any


class Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
               grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Keeps the method and serialized bytes of every request message a channel sends."""

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self._lock = threading.Lock()

    def _record(self, details: grpc.ClientCallDetails, request: Any) -> None:
        method = details.method
        name = method.decode() if isinstance(method, bytes) else str(method)
        with self._lock:
            self.calls.append(RecordedCall(name, request.SerializeToString(), details.metadata))

    def _stream(self, details: grpc.ClientCallDetails, requests: Iterator[Any]) -> Iterator[Any]:
        for request in requests:
            self._record(details, request)
            yield request

    def intercept_unary_unary(self, continuation: Callable[..., Any],
                              details: grpc.ClientCallDetails, request: Any) -> Any:
        self._record(details, request)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Callable[..., Any],
                               details: grpc.ClientCallDetails, request: Any) -> Any:
        self._record(details, request)
        return continuation(details, request)

    def intercept_stream_unary(self, continuation: Callable[..., Any],
                               details: grpc.ClientCallDetails, request_iterator: Any) -> Any:
        return continuation(details, self._stream(details, request_iterator))

    def intercept_stream_stream(self, continuation: Callable[..., Any],
                                details: grpc.ClientCallDetails, request_iterator: Any) -> Any:
        return continuation(details, self._stream(details, request_iterator))

    def methods(self) -> list[str]:
        return [c.method.rsplit("/", 1)[-1] for c in self.calls]
