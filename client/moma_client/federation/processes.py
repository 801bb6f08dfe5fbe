"""Flower's own processes, started the way a coordinator and a lab need them.

``flower-superlink`` (coordinator), ``flower-supernode`` (one per lab, its data file in the node
config) and ``flwr run`` (coordinator, with the app bundle in
``moma_client/federation/app``). Flower starts further processes by name
(``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp``), so the environment's ``bin``
folder is put first on ``PATH``. Each process gets its own session, so stopping one by its
process id also stops the helpers it started, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from moma_client.federation.protocol import FederationError

APP_DIR = Path(__file__).resolve().parent / "app"
CONNECTION_NAME = "moma"


def bin_dir() -> Path:
    """The folder holding this environment's console scripts (``flwr``, ``flower-*``)."""
    return Path(sys.executable).parent


def flower_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def free_port() -> int:
    """A TCP port free on loopback right now (for tests and local runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tls:
    """TLS material; ``None`` for a flag means plaintext (only with ``insecure``)."""

    insecure: bool = False
    certfile: Path | None = None
    keyfile: Path | None = None
    ca_certfile: Path | None = None

    def check(self, address: str) -> None:
        """DESIGN.md section 6: plaintext only when asked for, and only on loopback."""
        host = address.rsplit(":", 1)[0].strip("[]")
        if self.insecure and host not in ("127.0.0.1", "localhost", "::1"):
            raise FederationError(f"--insecure on {address}: plaintext is only allowed on "
                                  "loopback; use TLS certificates (see docs/federation.md)")


def _spawn(args: list[str], log: Path | None, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    handle: IO[bytes] | int = subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("ab")
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=dict(env),
                            start_new_session=True)


def superlink_args(host: str, port: int, tls: Tls, database: Path | None = None) -> list[str]:
    args = [str(bin_dir() / "flower-superlink"), "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation"]
    tls.check(f"{host}:{port}")
    if tls.insecure:
        args.append("--insecure")
    else:
        if not (tls.certfile and tls.keyfile):
            raise FederationError("the SuperLink needs --ssl-certfile and --ssl-keyfile "
                                  "(or --insecure on loopback)")
        args += ["--ssl-certfile", str(tls.certfile), "--ssl-keyfile", str(tls.keyfile)]
        if tls.ca_certfile:
            args += ["--ssl-ca-certfile", str(tls.ca_certfile)]
    if database is not None:
        args += ["--database", str(database)]
    return args


def node_config_text(config: Mapping[str, Any]) -> str:
    """``--node-config`` text: TOML-style ``key="value"`` pairs (JSON escapes are valid TOML)."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int | float):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={json.dumps(str(value))}")
    return " ".join(parts)


def supernode_args(superlink: str, port: int, node_config: Mapping[str, Any], tls: Tls,
                   host: str = "127.0.0.1") -> list[str]:
    tls.check(superlink)
    args = [str(bin_dir() / "flower-supernode"), "--superlink", superlink,
            "--host", host, "--port", str(port),
            "--node-config", node_config_text(node_config)]
    if tls.insecure:
        args.append("--insecure")
    elif tls.ca_certfile:
        args += ["--root-certificates", str(tls.ca_certfile)]
    return args


def write_connection(flwr_home: Path, superlink: str, tls: Tls) -> None:
    """``$FLWR_HOME/config.toml`` naming the SuperLink for ``flwr run``."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{CONNECTION_NAME}"', "",
             f"[superlink.{CONNECTION_NAME}]", f"address = {json.dumps(superlink)}"]
    if tls.insecure:
        lines.append("insecure = true")
    elif tls.ca_certfile:
        lines.append(f"root-certificates = {json.dumps(str(tls.ca_certfile))}")
    (flwr_home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_run_config(path: Path, config: Mapping[str, Any]) -> Path:
    """A TOML file for ``flwr run --run-config FILE`` (safer than quoting on a command line)."""
    lines = []
    for key, value in config.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {json.dumps(value)}")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def flwr_run_args(run_config: Path, stream: bool = True) -> list[str]:
    args = [str(bin_dir() / "flwr"), "run", str(APP_DIR), CONNECTION_NAME,
            "--run-config", str(run_config)]
    return [*args, "--stream"] if stream else args


@dataclass
class Proc:
    """A started Flower process, stopped by its id (and its session's helpers)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process's session (a SuperNode leaves the SuperLink cleanly), then
        SIGKILL after ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # helpers (superexec, app processes) share the session; make sure none survives
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(name: str, args: list[str], log: Path | None = None,
          env: Mapping[str, str] | None = None) -> Proc:
    return Proc(name, _spawn(args, log, env or flower_env()), log)


def wait_for_port(host: str, port: int, proc: Proc, timeout: float = 60.0) -> None:
    """Until something listens on ``host:port``; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise FederationError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                                  f"{proc.tail()}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise FederationError(f"{proc.name} did not listen on {host}:{port} within {timeout:.0f}s")
