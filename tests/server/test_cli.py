"""The operator CLI against a real hub: keys, modules and audit commands, each with --json."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.keys import load_private_key, public_key_to_b64, save_public_key
from tests.server.conftest import ModulePool
from tests.server.hubtest import (
    MOMA_HUB,
    HubProcess,
    Lab,
    operator_call,
    signed_manifest,
    upload,
)


def cli(hub: HubProcess, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([MOMA_HUB, *args, "--hub", hub.address, "--insecure",
                             "--operator-key", str(hub.operator_key_path)],
                            capture_output=True, text=True, timeout=60)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def cli_json(hub: HubProcess, *args: str) -> Any:
    return json.loads(cli(hub, *args, "--json").stdout)


def test_operator_cli(hub: HubProcess, modules: hub_pb2_grpc.ModuleServiceStub, pool: ModulePool,
                      tmp_path: Path) -> None:
    lab_a, lab_b = Lab.new("cli-a"), Lab.new("cli-b")
    save_public_key(tmp_path / "a.pub.pem", lab_a.private.public_key())
    key = cli_json(hub, "keys", "enroll", "cli-a", str(tmp_path / "a.pub.pem"))
    assert key["key_id"] == lab_a.key_id and key["lab_name"] == "cli-a"
    out = cli(hub, "keys", "enroll", "cli-b", public_key_to_b64(lab_b.private.public_key()))
    assert f"enrolled key {lab_b.key_id}" in out.stdout
    again = cli(hub, "keys", "enroll", "cli-b", public_key_to_b64(lab_b.private.public_key()),
                ok=False)
    assert again.returncode != 0 and "ALREADY_EXISTS" in again.stderr

    data, card = pool.take()
    module_id = upload(modules, signed_manifest(lab_a, data, card, hub.hub_id), data
                       ).module.module_id
    pending = {m["module_id"]: m["lab_name"] for m in cli_json(hub, "modules", "list")}
    assert pending[module_id] == "cli-a"
    shown = cli_json(hub, "modules", "show", module_id)
    assert shown["card"]["task"] == card["task"] and shown["module"]["lab_name"] == "cli-a"
    # the 16-digit id `modules list` shows is enough, and the CLI names the module it means
    by_prefix = cli(hub, "modules", "approve", module_id[:16], "--note", "checked", "--json")
    approved = json.loads(by_prefix.stdout)
    assert f"{module_id[:16]} is module {module_id}" in by_prefix.stderr
    assert approved["module"]["state"] == "MODULE_STATE_APPROVED"
    short = cli(hub, "modules", "show", module_id[:4], ok=False)
    assert short.returncode == 2 and "prefix of at least 6" in short.stderr
    assert len(base64.b64decode(approved["countersignature"]["signature"])) == 64
    assert "countersigned approved" in cli(hub, "modules", "show", module_id).stdout
    assert module_id not in [m["module_id"] for m in cli_json(hub, "modules", "list")]
    assert module_id in [m["module_id"] for m in cli_json(hub, "modules", "list", "--state",
                                                          "all")]
    revoked = cli_json(hub, "modules", "revoke", module_id, "--reason", "superseded")
    assert revoked["module"]["state"] == "MODULE_STATE_REVOKED"
    bad = cli(hub, "modules", "reject", module_id, ok=False)
    assert bad.returncode != 0 and "FAILED_PRECONDITION" in bad.stderr

    cli_json(hub, "keys", "revoke", lab_b.key_id, "--reason", "left")
    listed = {k["key_id"]: k for k in cli_json(hub, "keys", "list", "--all")}
    assert listed[lab_b.key_id]["revoked"] and not listed[lab_a.key_id]["revoked"]
    assert "cli-a" in cli(hub, "keys", "list").stdout

    audit = cli_json(hub, "audit")
    assert audit["verified"]
    assert [e["action"] for e in audit["entries"][-6:]] == [
        "key.enroll", "key.enroll", "module.submit", "module.approve", "module.revoke",
        "key.revoke"]
    assert re.search(r"audit chain verified: \d+ entries", cli(hub, "audit").stdout)


def test_cli_refuses_a_non_operator_key(hub: HubProcess, tmp_path: Path) -> None:
    lab = Lab.new("not-operator")
    from moma.trust.keys import save_private_key

    save_private_key(tmp_path / "lab.pem", lab.private)
    assert load_private_key(tmp_path / "lab.pem")
    result = subprocess.run([MOMA_HUB, "keys", "list", "--hub", hub.address, "--insecure",
                             "--operator-key", str(tmp_path / "lab.pem")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 6
    assert "UNAUTHENTICATED" in result.stderr and "unknown operator key" in result.stderr


def test_init_creates_keys(tmp_path: Path) -> None:
    result = subprocess.run([MOMA_HUB, "init", "--store", str(tmp_path / "s"), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["hub_id"] == f"hub-{info['hub_key_id']}"
    for name in ("hub_key.pem", "operator_key.pem"):
        assert (tmp_path / "s" / name).stat().st_mode & 0o777 == 0o600
    again = subprocess.run([MOMA_HUB, "init", "--store", str(tmp_path / "s")],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already has a hub identity" in again.stderr


def test_serve_with_unreachable_database(tmp_path: Path) -> None:
    """A wrong --db is a configuration error: one line naming the fix, exit 6, no traceback,
    and the password never printed."""
    store = tmp_path / "store"
    subprocess.run([MOMA_HUB, "init", "--store", str(store)], check=True, capture_output=True)
    result = subprocess.run(
        [MOMA_HUB, "serve", "--db", "postgresql+psycopg://moma:s3cret-pw@127.0.0.1:1/moma",
         "--store", str(store), "--listen", "127.0.0.1:0", "--insecure"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 6, result.stderr
    assert "cannot open the hub database postgresql+psycopg://moma:***@127.0.0.1:1/moma" in (
        result.stderr)
    assert "database server is running" in result.stderr
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr + result.stdout
    assert not (store / "hub.db").exists()


def test_hub_without_cgcnn_atom_table(tmp_path: Path, pool: ModulePool) -> None:
    """A hub that cannot build the CGCNN schema says so at start and refuses CGCNN uploads at
    StartUpload (before any byte moves), not at FinishUpload."""
    empty = tmp_path / "no-shared"
    empty.mkdir()
    hub = HubProcess(tmp_path / "hub", env={"MOMA_SHARED": str(empty)}).start()
    try:
        with hub.channel() as channel:
            lab = Lab.new("lab-a")
            operator_call(hub_pb2_grpc.OperatorServiceStub(channel), hub.operator, hub.hub_id,
                          "EnrollKey", hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                                public_key=lab.public_raw))
            data, card = pool.spare
            stub = hub_pb2_grpc.ModuleServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.StartUpload(hub_pb2.StartUploadRequest(
                    signed_manifest=signed_manifest(lab, data, card, hub.hub_id)), timeout=60)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "cannot check cgcnn modules" in err.value.details()
            assert "atom table" in err.value.details()
            assert hub.db_counts()["upload_sessions"] == 0
    finally:
        hub.stop()
    log = (hub.root / "hub.log").read_text()
    assert "backbone cgcnn is not usable on this hub" in log
