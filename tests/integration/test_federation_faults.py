"""Bad input in a real federation: each case has a clear outcome, never a silently wrong module.

One run on loopback with seven real SuperNodes, to pay Flower's start-up once:

- labs A and B are ordinary;
- lab C returns NaN tensors from round 2 on (the ClientApp's test-only ``fault`` switch);
- lab D drops out: its SuperNode is stopped (SIGTERM, by process id) once round 1 is done;
- lab E's data is another property (jarvis_2d_exfoliation): refused at the handshake;
- lab F pinned another base: refused at the handshake;
- lab G is killed outright mid-round: SIGKILL to its SuperNode and the ClientApp process
  training round 2, with no chance to say goodbye (a power cut, the OOM killer).

The run must finish with A and B, the card must name C, D and G as left out (with the reasons
per round) and E and F as refused, and the module must load (finite tensors: no NaN reached
it).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from moma.modules.store import load_module
from moma.paths import downstream_task_path
from moma.trust.keys import generate_keypair, key_id, load_private_key, save_private_key
from moma_client.federation.local import local_federation, split_dataset
from moma_client.federation.protocol import RunSpec

ROUNDS = 3


def clientapps_of(session: int) -> list[int]:
    """Process ids of ClientApp processes in a SuperNode's session (the SuperNode starts one
    per message it handles: while one runs, the lab is inside a round)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.getsid(int(entry.name)) != session or int(entry.name) == session:
                continue
            if b"flwr-clientapp" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def kill_mid_round(node_pid: int, deadline: float) -> list[int]:
    """SIGKILL a SuperNode's whole session as soon as it runs a ClientApp started after this
    call (one of the previous round may still be exiting); returns the ClientApp processes
    that were killed mid-work."""
    earlier = set(clientapps_of(node_pid))
    while time.monotonic() < deadline:
        busy = [pid for pid in clientapps_of(node_pid) if pid not in earlier]
        if busy:
            os.killpg(node_pid, signal.SIGKILL)
            return busy
        time.sleep(0.05)
    raise AssertionError("the lab never started a ClientApp in round 2")


def test_dropout_kill_nan_wrong_property_and_wrong_base(tmp_path: Path) -> None:
    shares = split_dataset(downstream_task_path("jarvis_2d_eform"), 5, tmp_path / "data")
    other = split_dataset(downstream_task_path("jarvis_2d_exfoliation"), 3, tmp_path / "exf")[0]
    keys = {}
    for name in "ABCDEFG":
        keys[name] = tmp_path / "keys" / f"{name}.pem"
        save_private_key(keys[name], generate_keypair().private)
    ids = {n: key_id(load_private_key(p).public_key()) for n, p in keys.items()}
    configs: dict[str, dict[str, object]] = {
        "A": {"data": shares[0]},
        "B": {"data": shares[1]},
        "C": {"data": shares[2], "fault": "nan:2"},
        "D": {"data": shares[3]},
        "E": {"data": other},
        "F": {"data": shares[0], "base-sha256": "ab" * 32},
        "G": {"data": shares[4]},
    }
    spec = RunSpec(task="jarvis_2d_eform", property="e_form", unit="formation energy, eV/atom",
                   out=str(tmp_path / "out"), rounds=ROUNDS, local_epochs=1, min_labs=2,
                   expected_labs=7, round_timeout=240.0).with_nonce()
    with local_federation(tmp_path / "flower") as fed:
        nodes = {n: fed.add_lab({**{k: str(v) for k, v in c.items()}, "key": str(keys[n])})
                 for n, c in configs.items()}
        run = fed.start_run(spec)
        deadline = time.monotonic() + 600
        while fed.progress(spec).get("round", 0) < 1 and time.monotonic() < deadline:
            assert run.alive() or (Path(spec.out) / "federation.json").exists(), run.tail()
            time.sleep(0.5)
        killed = kill_mid_round(nodes["G"].pid, time.monotonic() + 300)
        nodes["D"].stop()  # the lab leaves (SIGTERM: its SuperNode can say goodbye)
        report = fed.wait(run, spec, timeout=900.0)
        assert not nodes["G"].alive() and not any(Path(f"/proc/{p}").exists() for p in killed)
    assert report["status"] == "done", report

    card = load_module(Path(spec.out)).card  # loads: every tensor is finite
    fed_info = card.extra["federation"]
    refused = {r["lab"]: r["reason"] for r in fed_info["refused"]}
    assert "exfoliation" in refused[ids["E"]] and "declares 'e_form'" in refused[ids["E"]]
    assert "pinned base" in refused[ids["F"]]
    assert sorted(p["key_id"] for p in card.participants) == sorted(ids[n] for n in "ABCDG")

    rounds = fed_info["rounds"]
    assert len(rounds) == ROUNDS
    assert sorted(rounds[0]["averaged"]) == sorted(ids[n] for n in "ABCDG")
    for later in rounds[1:]:
        assert sorted(later["averaged"]) == sorted([ids["A"], ids["B"]]), later
        why = {e["lab"]: e["reason"] for e in later["excluded"]}
        assert "non-finite" in why[ids["C"]]
        assert ids["D"] in why and ids["G"] in why, later
    killed_round = {e["lab"]: e["reason"] for e in rounds[1]["excluded"]}
    assert "no reply" in killed_round[ids["G"]], killed_round  # named, not a failed run
    last = {e["lab"]: e["reason"] for e in rounds[-1]["excluded"]}
    for lab in "DG":
        assert "not connected" in last[ids[lab]] or "no reply" in last[ids[lab]]
    assert set(fed_info["labs_dropped"]) == {ids["C"], ids["D"], ids["G"]}
    averaged = {p["key_id"]: p["rounds_averaged"] for p in card.participants}
    assert averaged == {ids["A"]: ROUNDS, ids["B"]: ROUNDS, ids["C"]: 1, ids["D"]: 1,
                        ids["G"]: 1}
    assert card.metrics["test_mae"] < card.metrics["test_mae_train_mean"] * 1.5
