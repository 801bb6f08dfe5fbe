"""Bad input in a real federation: each case has a clear outcome, never a silently wrong module.

One run on loopback with six real SuperNodes, to pay Flower's start-up once:

- labs A and B are ordinary;
- lab C returns NaN tensors from round 2 on (the ClientApp's test-only ``fault`` switch);
- lab D drops out: its SuperNode is stopped (by process id) once round 1 is done;
- lab E's data is another property (jarvis_2d_exfoliation): refused at the handshake;
- lab F pinned another base: refused at the handshake.

The run must finish with A and B, the card must name C and D as left out (with the reasons
per round) and E and F as refused, and the module must load (finite tensors).
"""

from __future__ import annotations

import time
from pathlib import Path

from moma.modules.store import load_module
from moma.paths import downstream_task_path
from moma.trust.keys import generate_keypair, key_id, load_private_key, save_private_key
from moma_client.federation.local import local_federation, split_dataset
from moma_client.federation.protocol import RunSpec

ROUNDS = 3


def test_dropout_nan_wrong_property_and_wrong_base(tmp_path: Path) -> None:
    shares = split_dataset(downstream_task_path("jarvis_2d_eform"), 4, tmp_path / "data")
    other = split_dataset(downstream_task_path("jarvis_2d_exfoliation"), 3, tmp_path / "exf")[0]
    keys = {}
    for name in "ABCDEF":
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
    }
    spec = RunSpec(task="jarvis_2d_eform", property="e_form", unit="formation energy, eV/atom",
                   out=str(tmp_path / "out"), rounds=ROUNDS, local_epochs=1, min_labs=2,
                   expected_labs=6, round_timeout=240.0).with_nonce()
    with local_federation(tmp_path / "flower") as fed:
        nodes = {n: fed.add_lab({**{k: str(v) for k, v in c.items()}, "key": str(keys[n])})
                 for n, c in configs.items()}
        run = fed.start_run(spec)
        deadline = time.monotonic() + 600
        while fed.progress(spec).get("round", 0) < 1 and time.monotonic() < deadline:
            assert run.alive() or (Path(spec.out) / "federation.json").exists(), run.tail()
            time.sleep(0.5)
        nodes["D"].stop()  # the lab goes away mid-run
        report = fed.wait(run, spec, timeout=900.0)
    assert report["status"] == "done", report

    card = load_module(Path(spec.out)).card  # loads: every tensor is finite
    fed_info = card.extra["federation"]
    refused = {r["lab"]: r["reason"] for r in fed_info["refused"]}
    assert "exfoliation" in refused[ids["E"]] and "declares 'e_form'" in refused[ids["E"]]
    assert "pinned base" in refused[ids["F"]]
    assert sorted(p["key_id"] for p in card.participants) == sorted(ids[n] for n in "ABCD")

    rounds = fed_info["rounds"]
    assert len(rounds) == ROUNDS
    assert sorted(rounds[0]["averaged"]) == sorted(ids[n] for n in "ABCD")
    for later in rounds[1:]:
        assert sorted(later["averaged"]) == sorted([ids["A"], ids["B"]]), later
        why = {e["lab"]: e["reason"] for e in later["excluded"]}
        assert "non-finite" in why[ids["C"]]
        assert ids["D"] in why, later
    last = {e["lab"]: e["reason"] for e in rounds[-1]["excluded"]}
    assert "not connected" in last[ids["D"]] or "no reply" in last[ids["D"]]
    assert set(fed_info["labs_dropped"]) == {ids["C"], ids["D"]}
    averaged = {p["key_id"]: p["rounds_averaged"] for p in card.participants}
    assert averaged == {ids["A"]: ROUNDS, ids["B"]: ROUNDS, ids["C"]: 1, ids["D"]: 1}
    assert card.metrics["test_mae"] < card.metrics["test_mae_train_mean"] * 1.5
