"""Fast checks of what the coordinator and labs agree on, without starting Flower.

The pooled normalizer must equal the one central training on the union would use; a join
statement must be refused when anything about it is off; the run config the Flower app
declares must match :class:`RunSpec` (Flower refuses undeclared ``--run-config`` keys).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from moma.errors import TrustError
from moma.training.run import normalizer_for
from moma.trust.keys import generate_keypair
from moma_client.federation.processes import APP_DIR
from moma_client.federation.protocol import (
    FederationError,
    RunSpec,
    TargetStats,
    make_join_statement,
    parse_join_statement,
    pooled_normalizer,
)


def test_pooled_normalizer_equals_the_union(rng: np.random.Generator) -> None:
    parts = [rng.normal(2.0, 3.0, n) for n in (17, 150, 61)]
    pooled = pooled_normalizer([TargetStats.of(p) for p in parts])
    central = normalizer_for(np.concatenate(parts))
    assert pooled.mean == pytest.approx(central.mean, rel=1e-12)
    assert pooled.std == pytest.approx(central.std, rel=1e-12)


def _statement(nonce: str = "n1", **overrides: object) -> tuple[bytes, bytes, str]:
    key = generate_keypair().private
    args: dict = {"nonce": nonce, "prop": "e_form", "unit": "eV/atom", "dataset": "d",
                  "base_sha256": "", "sizes": {"train": 10, "val": 2, "test": 2},
                  "stats": TargetStats(10, 0.5, 2.0), **overrides}
    return make_join_statement(key, **args)


def test_join_statement_round_trip_and_refusals() -> None:
    raw, sig, pub = _statement()
    lab = parse_join_statement(raw, sig, pub, "n1")
    assert lab.sizes["train"] == 10 and lab.stats.m2 == 2.0
    assert lab.participant()["key_id"] == lab.key_id
    with pytest.raises(TrustError, match="another run"):
        parse_join_statement(raw, sig, pub, "n2")
    with pytest.raises(TrustError, match="signature"):
        parse_join_statement(raw.replace(b'"train":10', b'"train":99'), sig, pub, "n1")
    _, _, other_pub = _statement()
    with pytest.raises(TrustError, match="signature"):
        parse_join_statement(raw, sig, other_pub, "n1")


def test_run_config_matches_the_flower_app() -> None:
    declared = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    defaults = RunSpec(task="", property="", unit="", out="").to_run_config()
    assert declared["config"] == defaults
    components = declared["components"]
    assert components["serverapp"] == "moma_client.federation.coordinator.server_app:app"
    assert components["clientapp"] == "moma_client.federation.lab.client_app:app"


def test_run_spec_parsing_refuses_bad_values(tmp_path: Path) -> None:
    ok = RunSpec(task="t", property="p", unit="u", out=str(tmp_path)).to_run_config()
    assert RunSpec.from_run_config(ok).rounds == 5
    with pytest.raises(FederationError, match="unknown"):
        RunSpec.from_run_config({**ok, "epochs": 3})
    with pytest.raises(FederationError, match="lacks 'task'"):
        RunSpec.from_run_config({**ok, "task": ""})
    with pytest.raises(FederationError, match="clipping norm"):
        RunSpec.from_run_config({**ok, "dp-noise-multiplier": 1.0})
    with pytest.raises(FederationError, match="not a valid int"):
        RunSpec.from_run_config({**ok, "rounds": 2.5})


def test_screening_leaves_out_non_finite_and_overclaiming_replies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    from moma_client.federation.coordinator.strategy import Ledger, screen_reply

    # Messages are normally built inside a Flower task process, which sets its identity.
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)

    raw, sig, pub = _statement()
    lab = parse_join_statement(raw, sig, pub, "n1")
    ledger = Ledger({7: lab}, {"w": (2,)}, min_labs=1)

    def reply(values: list[float], count: int) -> Message:
        content = RecordDict({"arrays": ArrayRecord({"w": Array(np.asarray(values, np.float32))}),
                              "metrics": MetricRecord({"num-examples": count})})
        msg = Message(content, dst_node_id=0, message_type="train")
        msg.metadata.__dict__["_src_node_id"] = 7
        return msg

    good = reply([1.0, 2.0], 10)
    if good.metadata.src_node_id != 7:
        pytest.skip("this Flower version does not let a test set the sender")
    assert screen_reply(good, ledger) is None
    assert "non-finite" in str(screen_reply(reply([1.0, float("nan")], 10), ledger))
    assert "signed 10" in str(screen_reply(reply([1.0, 2.0], 1000), ledger))
