"""One real hub for the integration tests, populated the way labs and operators would do it.

Two labs create keys with ``moma-client keys init``; the operator enrolls them with
``moma-hub keys enroll``; lab A contributes the shared base (the imported MoE-(18) mp_eform
CGCNN) and a band-gap module fine-tuned from it; lab B trains and contributes a dielectric
constant module in one ``contribute --data`` call, and a module trained on the downstream task
itself (which compose must never use). One more module stays pending. The client runs
in-process (``moma_client.cli.app.main``), the hub as its own process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from moma.paths import cache_dir, downstream_task_path
from moma_client.cli.app import main
from tests.integration.hubenv import Hub

TASK = "jarvis_2d_eform"
TASK_PATH = str(downstream_task_path(TASK))
# Small real data sets for the labs' modules (120 structures each), so the hub fills in
# seconds; the demo uses the larger castelli perovskites.
LAB_A_DATA = str(downstream_task_path("jarvis_2d_gap_tbmbj"))
LAB_B_DATA = str(downstream_task_path("jarvis_2d_dielectric_tbmbj"))
FAST_TRAIN = ["--epochs", "1", "--max-train", "48", "--lr", "5e-4", "--batch-size", "16"]
FAST_COMPOSE = ["--epochs", "1", "--train-size", "48", "--patience", "5"]


def cli(*argv: str) -> tuple[int, str, str]:
    """Run ``moma-client`` in this process; returns (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, stdout.getvalue(), stderr.getvalue()


def ok(*argv: str) -> str:
    code, out, err = cli(*argv)
    assert code == 0, f"moma-client {' '.join(argv)} -> {code}\n{err}\n{out}"
    return out


@dataclass
class World:
    """The populated hub and what each party holds."""

    hub: Hub
    root: Path
    keys: dict[str, Path] = field(default_factory=dict)  # lab -> private key file
    ids: dict[str, str] = field(default_factory=dict)  # role -> module id
    modules: dict[str, Path] = field(default_factory=dict)  # role -> local module folder

    @property
    def hub_args(self) -> list[str]:
        return ["--hub", self.hub.address, "--insecure"]


@pytest.fixture(scope="session")
def client_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private $MOMA_CACHE (module cache, upload sessions) and config folder (known hubs),
    sharing the user's graph cache so structures are not featurized again."""
    graphs = cache_dir() / "graphs"
    root = tmp_path_factory.mktemp("client")
    (root / "cache").mkdir()
    graphs.mkdir(parents=True, exist_ok=True)
    (root / "cache" / "graphs").symlink_to(graphs, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOMA_CACHE", str(root / "cache"))
        mp.setenv("MOMA_KNOWN_HUBS", str(root / "known_hubs.json"))
        mp.setenv("XDG_CONFIG_HOME", str(root / "config"))
        mp.delenv("MOMA_HUB", raising=False)
        mp.delenv("MOMA_HUB_KEY", raising=False)
        yield root


def module_cache() -> Path:
    return Path(os.environ["MOMA_CACHE"]) / "modules"


def clear_module_cache() -> None:
    shutil.rmtree(module_cache(), ignore_errors=True)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, client_env: Path, moe18: Path
          ) -> Iterator[World]:
    root = tmp_path_factory.mktemp("world")
    hub = Hub(root / "hub").start()
    w = World(hub, root)
    try:
        for lab in ("lab-a", "lab-b"):
            w.keys[lab] = root / lab / "lab_key.pem"
            info = json.loads(ok("keys", "init", "--out", str(w.keys[lab]), "--json"))
            hub.enroll(lab, Path(info["public_key_file"]))
        ok("modules", "import-moe18", str(moe18), "--out", str(root / "moe18"))
        w.modules["base"] = root / "moe18" / "mp_eform"
        w.modules["pending"] = root / "moe18" / "jarvis_eform"
        ok("train", "--data", LAB_A_DATA, "--init", str(w.modules["base"]),
           *FAST_TRAIN, "--out", str(root / "lab-a" / "gap_tbmbj"))
        w.modules["lab_a"] = root / "lab-a" / "gap_tbmbj"

        def contribute(lab: str, *args: str) -> str:
            out = ok("contribute", *w.hub_args, "--key", str(w.keys[lab]), *args, "--json")
            entry = json.loads(out)
            assert entry["state"] == "pending"
            return str(entry["module_id"])

        w.ids["base"] = contribute("lab-a", "--module", str(w.modules["base"]))
        w.ids["lab_a"] = contribute("lab-a", "--module", str(w.modules["lab_a"]))
        w.modules["lab_b"] = root / "lab-b" / "dielectric_tbmbj"
        w.ids["lab_b"] = contribute("lab-b", "--data", LAB_B_DATA, "--init",
                                  str(w.modules["base"]), *FAST_TRAIN, "--out",
                                  str(w.modules["lab_b"]))
        w.modules["same_task"] = root / "lab-b" / "same_task"
        w.ids["same_task"] = contribute("lab-b", "--data", TASK_PATH, "--init",
                                        str(w.modules["base"]), *FAST_TRAIN, "--out",
                                        str(w.modules["same_task"]))
        w.ids["pending"] = contribute("lab-b", "--module", str(w.modules["pending"]))
        for role in ("base", "lab_a", "lab_b", "same_task"):
            hub.approve(w.ids[role])
        yield w
    finally:
        hub.stop()
