"""A real PostgreSQL for the storage tests: Debian's cluster, started by the test session.

Each test gets a fresh database (dropped afterwards). The cluster is stopped at the end only
if this session started it. Without PostgreSQL installed the PostgreSQL cases are skipped with
the command that installs it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ROLE = "moma_test"
PASSWORD = "moma_test"
HOST, PORT = "127.0.0.1", 5432


def _psql(sql: str) -> str:
    result = subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -qAtc \"{sql}\""],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {sql}: {result.stderr}")
    return result.stdout.strip()


def _port_open() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, PORT)) == 0


@contextmanager
def cluster() -> Iterator[None]:
    """Make sure the local cluster runs and the test role exists."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("su") is None:
        message = "PostgreSQL is not installed: apt-get install -y postgresql"
        if os.environ.get("MOMA_REQUIRE_POSTGRES"):
            pytest.fail(message + " (MOMA_REQUIRE_POSTGRES is set, as in CI)")
        pytest.skip(message)
    started = False
    if not _port_open():
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True, timeout=120)
        started = True
        deadline = time.monotonic() + 60
        while not _port_open():
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not open 127.0.0.1:5432 within 60 s")
            time.sleep(0.2)
    if not _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'"):
        _psql(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
    try:
        yield
    finally:
        if started:
            subprocess.run(["pg_ctlcluster", "15", "main", "stop"], timeout=120, check=False)


@contextmanager
def database() -> Iterator[str]:
    """A fresh, empty database; yields its SQLAlchemy URL."""
    name = f"moma_test_{secrets.token_hex(6)}"
    _psql(f"CREATE DATABASE {name} OWNER {ROLE}")
    try:
        yield f"postgresql+psycopg://{ROLE}:{PASSWORD}@{HOST}:{PORT}/{name}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
