"""Transfers that break and resume, over real TCP connections cut by a proxy, and the client
over TLS and mutual TLS against a real hub."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from moma.errors import ExitCode
from moma.modules.store import MODULE_FILE
from moma.proto.hub.v1 import hub_pb2
from moma_client.hub.connection import observe_channels
from tests.integration.conftest import World, clear_module_cache, cli, module_cache, ok
from tests.integration.hubenv import MOMA_CLIENT, BreakingProxy, Hub, Recorder, make_pki

CHUNK = "32768"


def upload_offsets(recorder: Recorder) -> list[int]:
    return [hub_pb2.UploadRequest.FromString(c.request).chunk.offset
            for c in recorder.calls if c.method.endswith("/Upload")]


def test_upload_resumes_after_the_connection_drops(world: World) -> None:
    module = world.root / "moe18" / "mp_bandgap"
    size = (module / MODULE_FILE).stat().st_size
    proxy = BreakingProxy(world.hub.port, limit=150_000, mode="drop", direction="up")
    recorder = Recorder()
    try:
        with observe_channels(recorder):
            code, stdout, err = cli("contribute", "--hub", proxy.address, "--insecure", "--key",
                                    str(world.keys["lab-a"]), "--module", str(module),
                                    "--chunk-size", CHUNK, "--json")
    finally:
        proxy.close()
    assert code == 0, err
    assert proxy.tripped.is_set() and proxy.connections >= 2
    assert "upload interrupted" in err
    entry = json.loads(stdout)
    assert entry["state"] == "pending" and entry["size"] == size
    offsets = upload_offsets(recorder)
    resend = next(i for i in range(1, len(offsets)) if offsets[i] <= offsets[i - 1])
    assert 0 < offsets[resend] < size  # continued from what the hub held, not from zero
    assert "StartUpload" in recorder.methods() and recorder.methods().count("StartUpload") == 1


@pytest.mark.slow
def test_upload_resumes_after_the_client_process_dies(world: World, tmp_path: Path) -> None:
    module = world.root / "moe18" / "jarvis_bandgap"
    proxy = BreakingProxy(world.hub.port, limit=150_000, mode="stall", direction="up")
    log = (tmp_path / "contribute.log").open("w")
    proc = subprocess.Popen([MOMA_CLIENT, "contribute", "--hub", proxy.address, "--insecure",
                             "--key", str(world.keys["lab-b"]), "--module", str(module),
                             "--chunk-size", CHUNK], stdout=log, stderr=log, env=os.environ)
    try:
        assert proxy.tripped.wait(120), (tmp_path / "contribute.log").read_text()
        time.sleep(1.0)
        proc.kill()  # the client dies mid-upload
        proc.wait()
        sessions = list((Path(os.environ["MOMA_CACHE"]) / "uploads").glob("*.json"))
        assert len(sessions) == 1 and sessions[0].stat().st_mode & 0o077 == 0
        code, stdout, err = cli("contribute", "--hub", proxy.address, "--insecure", "--key",
                                str(world.keys["lab-b"]), "--module", str(module), "--json")
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()
    assert code == 0, err
    entry = json.loads(stdout)
    assert entry["state"] == "pending" and entry["resumed_from"] > 0
    assert "resuming upload" in err
    assert not sessions[0].exists()


def test_download_resumes_after_the_connection_drops(world: World) -> None:
    module_id = world.ids["lab_a"]
    data = (world.modules["lab_a"] / MODULE_FILE).read_bytes()
    clear_module_cache()
    proxy = BreakingProxy(world.hub.port, limit=150_000, mode="drop", direction="down")
    recorder = Recorder()
    try:
        with observe_channels(recorder):
            out = ok("modules", "pull", module_id, "--hub", proxy.address, "--insecure",
                     "--json")
    finally:
        proxy.close()
    assert proxy.tripped.is_set()
    assert json.loads(out)[0]["from_cache"] is False
    assert (module_cache() / module_id / MODULE_FILE).read_bytes() == data
    offsets = [hub_pb2.DownloadRequest.FromString(c.request).offset
               for c in recorder.calls if c.method.endswith("/Download")]
    # The hub sends 1 MiB chunks, so this 400 kB module is one chunk: a cut stream leaves no
    # bytes to keep and the retry asks from 0 again (resuming from a partial file at an offset
    # is test_hub_flow's test_cache_heals_altered_copies_and_resumes_partial_downloads).
    assert len(offsets) >= 2 and all(0 <= o < len(data) for o in offsets)
    assert not list((module_cache() / ".partial").glob("*.part"))


def test_contribute_and_pull_over_mutual_tls(tmp_path: Path, world: World) -> None:
    pki = make_pki(tmp_path / "pki")
    hub = Hub(tmp_path / "tls-hub", hub_id="tls-hub", tls=(pki["server_cert"], pki["server_key"]),
              client_ca=pki["ca"],
              operator_tls=["--ca", str(pki["ca"]), "--client-cert",
                            str(pki["client_cert"]), "--client-key", str(pki["client_key"])])
    hub.start()
    try:
        tls = ["--hub", hub.address, "--ca", str(pki["ca"]), "--client-cert",
               str(pki["client_cert"]), "--client-key", str(pki["client_key"]), "--hub-key",
               hub.public_key]
        hub.enroll("lab-a", world.keys["lab-a"].with_name("lab_key.pub.pem"))
        entry = json.loads(ok("contribute", *tls, "--key", str(world.keys["lab-a"]),
                              "--module", str(world.modules["base"]), "--json"))
        hub.approve(entry["module_id"])
        clear_module_cache()
        pulled = json.loads(ok("modules", "pull", entry["module_id"], *tls, "--json"))
        assert pulled[0]["module_id"] == entry["module_id"] and not pulled[0]["from_cache"]

        no_client_cert = ["--hub", hub.address, "--ca", str(pki["ca"])]
        for argv, needle in ((no_client_cert, "UNAVAILABLE"),
                             (["--hub", hub.address], "UNAVAILABLE"),  # system roots only
                             (["--hub", hub.address, "--insecure"], "UNAVAILABLE")):
            code, _, err = cli("modules", "list", *argv)
            assert code == ExitCode.NETWORK and needle in err, err
            assert len(err.strip().splitlines()) == 1
        code, _, err = cli("modules", "list", "--hub", hub.address, "--insecure", "--ca",
                           str(pki["ca"]))
        assert code == ExitCode.USAGE and "choose one" in err
    finally:
        hub.stop()
