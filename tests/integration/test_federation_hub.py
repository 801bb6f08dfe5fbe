"""A federated module enters the hub like any other: contributed, approved, used by compose.

Real processes throughout: a ``moma-hub`` (its own, so the shared hub of the other tests keeps
its exact listing), a Flower SuperLink with two lab SuperNodes (each with a share of
expt_eform, the experimental formation enthalpy), ``flwr run`` from the imported MoE-(18)
``mp_eform`` base, with Flower's differential-privacy wrapper on; then ``moma-client
contribute`` with the coordinator's key, operator approval, and ``moma-client compose --hub``
for jarvis_2d_eform.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moma.amc.pipeline import subsample_train
from moma.data.readers import load_dataset
from moma.modules.store import load_module
from moma.paths import downstream_task_path
from moma.trust.keys import generate_keypair, save_private_key
from moma_client.federation.local import local_federation, split_dataset
from moma_client.federation.protocol import RunSpec
from tests.integration.conftest import FAST_COMPOSE, TASK_PATH, clear_module_cache, cli, ok
from tests.integration.hubenv import Hub

TRAIN_SIZE = int(FAST_COMPOSE[FAST_COMPOSE.index("--train-size") + 1])


def test_federated_module_is_contributed_approved_and_composed(
        tmp_path: Path, client_env: Path, moe18: Path) -> None:
    hub = Hub(tmp_path / "hub", hub_id="federation-hub").start()
    try:
        coordinator = tmp_path / "coordinator.pem"
        info = json.loads(ok("keys", "init", "--out", str(coordinator), "--json"))
        hub.enroll("coordinator", Path(info["public_key_file"]))
        ok("modules", "import-moe18", str(moe18), "--out", str(tmp_path / "moe18"))
        base = tmp_path / "moe18" / "mp_eform"
        hub_args = ["--hub", hub.address, "--insecure", "--hub-key", hub.public_key]
        base_entry = json.loads(ok("contribute", *hub_args, "--key", str(coordinator),
                                   "--module", str(base), "--json"))
        hub.approve(base_entry["module_id"])

        shares = split_dataset(downstream_task_path("expt_eform"), 5, tmp_path / "data")[:2]
        spec = RunSpec(task="expt_eform", property="e_form expt",
                       unit="experimental formation enthalpy, eV/atom",
                       out=str(tmp_path / "federated"), base=str(base), rounds=2,
                       local_epochs=1, lr=5e-4, expected_labs=2, round_timeout=600.0,
                       coordinator_key_id=info["key_id"],
                       # Flower's DP wrapper, with settings too mild to hurt this small run
                       dp_clipping_norm=100.0, dp_noise_multiplier=1e-4).with_nonce()
        with local_federation(tmp_path / "flower") as fed:
            for i, data in enumerate(shares):
                key = tmp_path / f"lab{i}.pem"
                save_private_key(key, generate_keypair().private)
                fed.add_lab({"data": str(data), "key": str(key), "base": str(base)})
            report = fed.wait(fed.start_run(spec), spec, timeout=1200.0)
        assert report["status"] == "done", report
        module = load_module(Path(spec.out))
        assert module.card.base_sha256 == base_entry["module_id"]
        assert len(module.card.participants) == 2
        dp = module.card.hyperparameters["differential_privacy"]
        assert dp["clipping_norm"] == 100.0 and dp["noise_multiplier"] == 1e-4

        entry = json.loads(ok("contribute", *hub_args, "--key", str(coordinator), "--module",
                              spec.out, "--json"))
        assert entry["state"] == "pending" and entry["module_id"] == module.module_id
        hub.approve(module.module_id)

        clear_module_cache()
        code, stdout, err = cli("compose", "--data", TASK_PATH, *hub_args, "--out",
                                str(tmp_path / "composed"), *FAST_COMPOSE, "--json")
        assert code == 0, err
        composed = json.loads(stdout)
        weights = {c["module_id"]: c["weight"] for c in composed["candidates"]}
        assert set(weights) == {base_entry["module_id"], module.module_id}
        assert np.isfinite(composed["metrics"]["test_mae"])
        print(f"\nAMC weights: federated {weights[module.module_id]:.3f}, "
              f"base {weights[base_entry['module_id']]:.3f}")
        assert min(weights.values()) >= 0 and abs(sum(weights.values()) - 1) < 1e-6, weights
        # The federated module's embedding carries signal for the new task: its leave-one-out
        # kNN proxy beats predicting the mean of the same training labels. (Its QP weight is
        # not asserted: with two candidates and 48 structures the QP may rightly put all the
        # weight on the base, which was pretrained on the same property.)
        proxy = {c["module_id"]: c["proxy_mae"] for c in composed["candidates"]}
        dataset = load_dataset(Path(TASK_PATH))
        train = subsample_train(dataset.splits["seed0"]["train"], TRAIN_SIZE, 0)
        labels = dataset.targets[train]
        mean_mae = float(np.mean(np.abs(labels - labels.mean())))
        print(f"proxy MAE: federated {proxy[module.module_id]:.3f}, train-mean {mean_mae:.3f}")
        assert proxy[module.module_id] < 0.8 * mean_mae, (proxy, mean_mae)
    finally:
        hub.stop()
