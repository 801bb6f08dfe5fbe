"""Untrusted text never reaches a terminal or markup raw (issue class 2).

Against a real hub process and the real ``moma-hub`` / ``moma-client`` executables:

- a card whose text could harm a terminal (escape sequences, newlines, bidi overrides,
  markup in an identifier, oversized strings) is refused at StartUpload, naming the field;
- operator text (lab names, reasons) follows the same character rules;
- text that is already stored (written by an earlier hub version, planted here straight into
  the hub's database) and text the rules allow (``[/]`` in a name or unit) is printed escaped
  by every listing and show command, in tables, plain lines and JSON alike.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.keys import public_key_to_raw
from tests.server.conftest import ModulePool
from tests.server.hubtest import MOMA_HUB, HubProcess, Lab, operator_call, signed_manifest, upload
from tests.server.test_hostile import crafted, refused

MOMA_CLIENT = str(Path(sys.executable).with_name("moma-client"))
ESC = "\x1b"
PLANTED_TASK = f"t{ESC}[2J{ESC}[31m\nmodule 0000 is now approved [/]"
PLANTED_LAB = f"lab{ESC}]0;owned\a\u202e[/red]"


@pytest.mark.parametrize(("field", "value", "words"), [
    ("name", f"eform{ESC}[2J", ["name", "U+001B"]),
    ("unit", "eV\napproved", ["unit", "U+000A"]),
    ("name", "abc\u202edef", ["name", "U+202E"]),
    ("task", "jarvis[/]", ["task", "ASCII letters"]),
    ("property", "x" * 200, ["property", "over the limit of 128"]),
])
def test_card_text_refused_at_submission(hub: HubProcess, modules: hub_pb2_grpc.ModuleServiceStub,
                                         lab: Lab, pool: ModulePool, field: str, value: str,
                                         words: list[str]) -> None:
    data, card = pool.spare
    card = {**card, field: value}
    before = hub.snapshot()
    message = refused(lambda: modules.StartUpload(hub_pb2.StartUploadRequest(
        signed_manifest=signed_manifest(lab, data, card, hub.hub_id)), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT, "card field", *words)
    assert ESC not in message and "\n" not in message and len(message) < 400
    assert hub.snapshot() == before


def test_nested_card_strings_are_checked(hub: HubProcess, modules: hub_pb2_grpc.ModuleServiceStub,
                                         lab: Lab, pool: ModulePool) -> None:
    data, card = pool.spare
    card = {**card, "extra": {"notes": ["fine", f"line one\r{ESC}[1Aapproved"]}}
    refused(lambda: modules.StartUpload(hub_pb2.StartUploadRequest(
        signed_manifest=signed_manifest(lab, data, card, hub.hub_id)), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT, "extra.notes[1]", "U+000D")


def test_operator_text_follows_the_rules(hub: HubProcess,
                                         operators: hub_pb2_grpc.OperatorServiceStub) -> None:
    lab = Lab.new("x")
    refused(lambda: operator_call(operators, hub.operator, hub.hub_id, "EnrollKey",
                                  hub_pb2.EnrollKeyRequest(lab_name="lab\nb",
                                                           public_key=lab.public_raw)),
            grpc.StatusCode.INVALID_ARGUMENT, "lab_name", "U+000A")


@pytest.fixture()
def text_hub(tmp_path: Path) -> Iterator[HubProcess]:
    with HubProcess(tmp_path / "hub") as process:
        yield process


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env_home = tmp_path / "home"
    env_home.mkdir(exist_ok=True)
    result = subprocess.run(args, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOME": str(env_home),
                                 "MOMA_KNOWN_HUBS": str(env_home / "known_hubs.json"),
                                 "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    return result


def _assert_safe(output: str, *literals: str) -> None:
    assert ESC not in output and "\a" not in output and "\u202e" not in output, output
    assert "\nmodule 0000 is now approved" not in output, output
    for literal in literals:
        assert literal in output, (literal, output)


def test_clis_escape_contributor_text(text_hub: HubProcess, pool: ModulePool,
                                      tmp_path: Path) -> None:
    hub = text_hub
    data, card = pool.modules[1]
    card = {**crafted(card, data), "name": "[/]name", "unit": "[bold]eV[/]"}
    lab = Lab.new("markup-lab")
    with hub.channel() as chan:
        operator_call(hub_pb2_grpc.OperatorServiceStub(chan), hub.operator, hub.hub_id,
                      "EnrollKey", hub_pb2.EnrollKeyRequest(lab_name=lab.name,
                                                           public_key=lab.public_raw))
        module_id = upload(hub_pb2_grpc.ModuleServiceStub(chan),
                           signed_manifest(lab, data, card, hub.hub_id), data).module.module_id
    # text stored by an earlier hub version, before the rules existed
    with sqlite3.connect(hub.store / "hub.db") as con:
        con.execute("UPDATE modules SET task = ? WHERE module_id = ?", (PLANTED_TASK, module_id))
        con.execute("UPDATE keys SET lab_name = ? WHERE key_id = ?", (PLANTED_LAB, lab.key_id))

    op = ["--hub", hub.address, "--insecure", "--operator-key", str(hub.operator_key_path)]
    table = _run([MOMA_HUB, "modules", "list", "--state", "pending", *op], tmp_path).stdout
    _assert_safe(table, "[/]", "\\x1b[2J", "lab\\x1b]0;owned\\x07\\u202e[/red]")
    shown = _run([MOMA_HUB, "modules", "show", module_id, *op], tmp_path).stdout
    _assert_safe(shown, "\\x1b[2J\\x1b[31m\\x0amodule 0000", "[/]name", "[bold]eV[/]")
    listed = _run([MOMA_HUB, "modules", "list", "--state", "pending", "--json", *op],
                  tmp_path).stdout
    _assert_safe(listed)
    assert json.loads(listed)[0]["task"] == PLANTED_TASK  # escaped, not altered
    keys = _run([MOMA_HUB, "keys", "list", *op], tmp_path).stdout
    _assert_safe(keys, "\\u202e[/red]")

    hub_key = base64.b64encode(public_key_to_raw(hub.hub_key.public_key())).decode()
    client = ["--hub", hub.address, "--insecure", "--hub-key", hub_key]
    lines = _run([MOMA_CLIENT, "modules", "list", "--state", "pending", *client], tmp_path)
    _assert_safe(lines.stdout + lines.stderr, "\\x1b[2J", "\\u202e[/red]")
    card_lines = _run([MOMA_CLIENT, "modules", "show", module_id, *client], tmp_path)
    _assert_safe(card_lines.stdout, "name: [/]name", "unit: [bold]eV[/]", "\\u202e[/red]")
    as_json = _run([MOMA_CLIENT, "modules", "show", module_id, *client, "--json"], tmp_path)
    _assert_safe(as_json.stdout)
    payload: dict[str, Any] = json.loads(as_json.stdout)
    assert payload["module"]["lab_name"] == PLANTED_LAB
