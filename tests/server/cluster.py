"""A scaled-out hub for the tests: N replicas on one PostgreSQL and one S3 bucket, nginx in front.

Replicas are real ``moma-hub serve`` processes sharing the hub key, hub id and operator key;
nginx is Debian's binary (``/usr/sbin/nginx``) with a generated configuration: one HTTP/2
listener on a free loopback port, ``grpc_pass`` to an upstream of the replicas, and
``grpc_next_upstream`` so a call that cannot reach one replica goes to the next, and
``X-Forwarded-For`` set as ``deploy/scale/nginx.conf`` sets it. Everything runs on loopback, so
the replicas trust 127.0.0.1 as a proxy (``--trusted-proxy``): a test client may say whom it
stands for, as a front proxy would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from moma.trust.keys import generate_keypair
from tests.server.hubtest import HubProcess, stop_process
from tests.server.seaweed import Seaweed

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Nginx:
    """nginx proxying gRPC to ``backends`` (host:port)."""

    root: Path
    backends: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self) -> str:
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read our temp dirs
        temps = "".join(f"    {name}_temp_path {self.root / name};\n"
                        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        servers = "".join(f"        server {b} max_fails=1 fail_timeout=5s;\n"
                          for b in self.backends)
        return (f"{user}worker_processes 1;\npid {self.root / 'nginx.pid'};\n"
                f"error_log {self.root / 'error.log'} warn;\ndaemon off;\n"
                "events { worker_connections 1024; }\n"
                "http {\n"
                "    log_format upstreams '$request_uri $status $upstream_addr';\n"
                f"    access_log {self.root / 'access.log'} upstreams;\n{temps}"
                "    client_max_body_size 0;\n"  # streams: the hub enforces its own limits
                f"    upstream hubs {{\n{servers}    }}\n"
                "    server {\n"
                f"        listen 127.0.0.1:{self.port} http2;\n"
                "        location / {\n"
                "            grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                "            grpc_pass grpc://hubs;\n"
                "            grpc_next_upstream error timeout;\n"
                "            grpc_connect_timeout 2s;\n"
                "            grpc_read_timeout 300s;\n"
                "            grpc_send_timeout 300s;\n"
                "        }\n"
                "    }\n"
                "}\n")

    def start(self) -> Nginx:
        if not Path(NGINX).exists():
            message = "nginx is not installed: apt-get install -y nginx"
            if os.environ.get("MOMA_REQUIRE_NGINX"):
                pytest.fail(message + " (MOMA_REQUIRE_NGINX is set, as in CI)")
            pytest.skip(message)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf = self.root / "nginx.conf"
        conf.write_text(self.config())
        check = subprocess.run([NGINX, "-t", "-q", "-c", str(conf), "-p", str(self.root)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused its configuration: {check.stderr}")
        self.proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(self.root)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start: "
                                   + (self.root / "error.log").read_text(errors="replace"))
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]
        self.proc = None

    def upstreams(self) -> list[tuple[str, str]]:
        """(gRPC method path, replica address) of every call nginx logged so far."""
        lines = (self.root / "access.log").read_text().splitlines()
        return [(line.split()[0], line.split()[-1]) for line in lines if line.strip()]


@dataclass
class Cluster:
    """``size`` hub replicas sharing one database and one bucket, plus nginx."""

    root: Path
    db: str
    weed: Seaweed
    size: int = 3
    hub_id: str = "scale-hub"
    operator: Ed25519PrivateKey = field(default_factory=lambda: generate_keypair().private)
    hub_key: Ed25519PrivateKey = field(default_factory=lambda: generate_keypair().private)
    replicas: list[HubProcess] = field(default_factory=list)
    nginx: Nginx | None = None
    bucket: str = ""

    def start(self, *, with_nginx: bool = True) -> Cluster:
        try:
            return self._start(with_nginx)
        except BaseException:
            self.stop()  # never leave replicas running behind a failed start
            raise

    def _start(self, with_nginx: bool) -> Cluster:
        self.bucket = self.bucket or self.weed.bucket()
        for index in range(self.size):
            replica = HubProcess(self.root / f"replica{index}", hub_id=self.hub_id, db=self.db,
                                 store_url=f"s3://{self.bucket}/hub", env=self.weed.env,
                                 operator=self.operator, hub_key=self.hub_key, keep_port=True,
                                 extra=["--trusted-proxy", "127.0.0.1"])
            self.replicas.append(replica)
        self.replicas[0].start(timeout=240)  # alone: the first creates the tables
        # the others together; a loaded machine (2 cores) can take minutes to import torch twice
        others = [threading.Thread(target=r.start, kwargs={"timeout": 240})
                  for r in self.replicas[1:]]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join()
        if not all(r.proc is not None and r.port for r in self.replicas):
            raise RuntimeError(f"a replica did not start; logs under {self.root}")
        if with_nginx:
            self.nginx = Nginx(self.root / "nginx", [r.address for r in self.replicas]).start()
        return self

    @property
    def addresses(self) -> str:
        """The client's own failover list: ``a:p,b:p,c:p``."""
        return ",".join(r.address for r in self.replicas)

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for replica in self.replicas:
            replica.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
