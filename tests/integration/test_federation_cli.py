"""The commands a coordinator and a lab type: ``moma-client federate superlink | lab | run``.

Each ``superlink`` and ``lab`` runs as its own process (the console script, as a person
starts it) and is stopped by its process id; ``federate run`` runs in this process and must
leave a loadable module whose card names the coordinator, and stopping the commands must leave
no Flower process behind. Plaintext off loopback is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moma.modules.store import load_module
from moma.paths import downstream_task_path
from moma_client.federation import processes as fp
from moma_client.federation.local import split_dataset
from tests.integration.conftest import cli, ok

MOMA_CLIENT = str(Path(sys.executable).with_name("moma-client"))


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> fp.Proc:
    handle = log.open("ab")
    popen = subprocess.Popen([MOMA_CLIENT, *args], stdout=handle, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
    return fp.Proc(args[1], popen, log)


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (zombies excluded)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


@pytest.mark.slow  # ~2 min of Flower processes; the same run is covered by test_federation.py
def test_federate_commands_end_to_end(tmp_path: Path, client_env: Path) -> None:
    shares = split_dataset(downstream_task_path("jarvis_2d_eform"), 5, tmp_path / "data")[:2]
    keys = []
    for name in ("coordinator", "lab1", "lab2"):
        keys.append(tmp_path / f"{name}.pem")
        ok("keys", "init", "--out", str(keys[-1]))
    coordinator = json.loads(ok("keys", "init", "--out", str(tmp_path / "c2.pem"), "--json"))
    port = fp.free_port()
    env = fp.flower_env({"FLWR_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"})
    procs = [_spawn(["federate", "superlink", "--port", str(port), "--insecure"],
                    tmp_path / "superlink.log", env)]
    try:
        fp.wait_for_port("127.0.0.1", port, procs[0])
        for i, data in enumerate(shares):
            procs.append(_spawn(["federate", "lab", "--superlink", f"127.0.0.1:{port}",
                                 "--data", str(data), "--key", str(keys[i + 1]),
                                 "--port", str(fp.free_port()), "--insecure"],
                                tmp_path / f"lab{i}.log", env))
        out = tmp_path / "module"
        code, stdout, err = cli(
            "federate", "run", "--superlink", f"127.0.0.1:{port}", "--insecure",
            "--task", "jarvis_2d_eform", "--property", "e_form",
            "--unit", "formation energy, eV/atom", "--rounds", "1", "--local-epochs", "1",
            "--labs", "2", "--key", str(tmp_path / "c2.pem"), "--out", str(out), "--json",
            "--round-timeout", "600", "--timeout", "900")
        assert code == 0, err + "\n".join(p.tail() for p in procs)
        card = json.loads(stdout)
        assert card["contributor_key_id"] == coordinator["key_id"]
        assert len(card["participants"]) == 2
        assert load_module(out).module_id == card["module_id"]
    finally:
        for proc in procs:
            proc.stop()
    time.sleep(2)
    assert not _processes_mentioning(f"127.0.0.1:{port}"), "a Flower process outlived its stop"

    code, _, err = cli("federate", "lab", "--superlink", "10.1.2.3:8000", "--insecure",
                       "--data", str(shares[0]), "--key", str(keys[1]))
    assert code != 0 and "only allowed on loopback" in err
