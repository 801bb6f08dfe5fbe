"""Three labs train one CGCNN module with Flower, and it is as good as training on the union.

Real processes on loopback: ``flower-superlink``, three ``flower-supernode`` (each with its
own third of jarvis_2d_eform's seed0 train/val/test split as a data file, and its own key) and
``flwr run`` with this project's Flower app. The same module is then trained centrally on the
union (``train_module``, the code behind ``moma-client train``) and by each lab alone, with
the same number of epochs. Checks: federated test MAE within 15% of central, and better than
the mean of the three lab-alone modules (all on the full test split).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from moma.backbones.registry import get_backbone
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.modules.loading import model_from_module
from moma.modules.moe18 import import_moe18
from moma.modules.store import load_module
from moma.paths import downstream_task_path
from moma.training.loop import TrainConfig, predict_standardized
from moma.training.run import train_module
from moma.trust.keys import generate_keypair, key_id, load_private_key, save_private_key
from moma_client.federation.local import local_federation, split_dataset
from moma_client.federation.protocol import RunSpec

TASK = "jarvis_2d_eform"
ROUNDS = 8
LOCAL_EPOCHS = 2
LR = 1e-3


def make_keys(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"lab{i + 1}.pem"
        save_private_key(path, generate_keypair().private)
        paths.append(path)
    return paths


def test_three_labs_match_central_training(tmp_path: Path, moe18: Path) -> None:
    files = split_dataset(downstream_task_path(TASK), 3, tmp_path / "data")
    import_moe18(moe18, tmp_path / "moe18")
    base = tmp_path / "moe18" / "mp_eform"  # the shared base: MoE-(18) formation energy
    init = load_module(base)
    keys = make_keys(tmp_path / "keys", 3)
    coordinator = generate_keypair().private
    spec = RunSpec(task=TASK, property="e_form", unit="formation energy, eV/atom",
                   out=str(tmp_path / "federated"), base=str(base), rounds=ROUNDS,
                   local_epochs=LOCAL_EPOCHS, lr=LR, expected_labs=3, min_labs=3,
                   round_timeout=600.0,
                   coordinator_key_id=key_id(coordinator.public_key())).with_nonce()
    backbone = get_backbone("cgcnn")
    full = prepare(load_dataset(downstream_task_path(TASK)), backbone, "seed0")
    test_g, test_y = full.part("test")
    config = TrainConfig(epochs=ROUNDS * LOCAL_EPOCHS, patience=ROUNDS * LOCAL_EPOCHS, lr=LR)

    def test_mae(folder: Path) -> float:
        loaded = load_module(folder)
        model = model_from_module(backbone, loaded)
        pred = loaded.card.normalizer.denormalize(predict_standardized(backbone, model, test_g))
        return float(np.mean(np.abs(pred - test_y)))

    tick = time.perf_counter()
    with local_federation(tmp_path / "flower") as fed:
        for data, key in zip(files, keys, strict=True):
            fed.add_lab({"data": str(data), "key": str(key)})
        run = fed.start_run(spec)
        # While the labs train (Flower's processes also spend time polling), train the same
        # module centrally on the union and by each lab alone: `train_module` is the code
        # behind `moma-client train`, with the same epoch budget as rounds x local epochs.
        central = train_module(full, backbone, kind="full", config=config,
                               out=tmp_path / "central", init=init)
        alone = []
        for i, data in enumerate(files):
            prepared = prepare(load_dataset(data), backbone, "seed0")
            train_module(prepared, backbone, kind="full", config=config,
                         out=tmp_path / f"alone{i}", init=init)
            alone.append(test_mae(tmp_path / f"alone{i}"))
        baseline_seconds = time.perf_counter() - tick
        report = fed.wait(run, spec, timeout=1200.0)
    fed_seconds = time.perf_counter() - tick
    assert report["status"] == "done", report

    module = load_module(Path(spec.out))  # every check of a downloaded module
    card = module.card
    assert card.kind == "full" and card.task == TASK and card.contributor_key_id
    assert card.base_sha256 == init.module_id == central.card.base_sha256
    assert sorted(p["key_id"] for p in card.participants) == sorted(
        key_id(load_private_key(k).public_key()) for k in keys)
    assert all(p["rounds_averaged"] == ROUNDS for p in card.participants)
    assert card.hyperparameters["rounds"] == ROUNDS
    assert not card.extra["federation"]["labs_dropped"]
    assert card.dataset_size == {p: len(full.split[p]) for p in ("train", "val", "test")}
    # the normalizer pooled from the labs' signed statistics is the union's
    assert card.normalizer.mean == pytest.approx(central.card.normalizer.mean, rel=1e-9)
    assert card.normalizer.std == pytest.approx(central.card.normalizer.std, rel=1e-9)

    federated, centralized = test_mae(Path(spec.out)), test_mae(tmp_path / "central")
    assert federated == pytest.approx(card.metrics["test_mae"], rel=1e-6)
    print(f"\nfederated {federated:.4f} ({fed_seconds:.0f}s wall, best round "
          f"{card.metrics['best_round']:.0f}), central {centralized:.4f}, baselines "
          f"{baseline_seconds:.0f}s, alone {np.round(alone, 4).tolist()} "
          f"(mean {np.mean(alone):.4f}), train-mean predictor "
          f"{card.metrics['test_mae_train_mean']:.4f}")
    assert federated <= 1.15 * centralized
    assert federated < float(np.mean(alone))
