"""Federated vs central vs lab-alone training of one CGCNN module, from one run each.

A real Flower federation on loopback (SuperLink + N SuperNodes, `flwr run`) trains a module on
a downstream task's seed split dealt to N labs; the same module is trained centrally on the
union and by each lab alone with the same epoch budget (rounds x local epochs), through
`train_module` (the `moma-client train` code). Prints test MAEs (on the full test split),
ratios and wall times, and writes them as JSON.

    .venv/bin/python benchmarks/bench_federation.py                      # full size
    .venv/bin/python benchmarks/bench_federation.py --rounds 4 --local-epochs 4 --quick
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from moma.backbones.registry import get_backbone
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.modules.loading import model_from_module
from moma.modules.moe18 import import_moe18
from moma.modules.store import load_module
from moma.paths import downstream_task_path, moe18_dir
from moma.training.loop import TrainConfig, predict_standardized
from moma.training.run import train_module
from moma.trust.keys import generate_keypair, save_private_key
from moma_client.federation.local import local_federation, split_dataset
from moma_client.federation.protocol import RunSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="jarvis_2d_eform")
    parser.add_argument("--labs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--base", default="scratch", help="'scratch' or a MoE-(18) task name")
    parser.add_argument("--dp-clipping-norm", type=float, default=0.0)
    parser.add_argument("--dp-noise-multiplier", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/federation"))
    parser.add_argument("--quick", action="store_true", help="label the result as quick")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-fed-") as tmp:
        root = Path(tmp)
        result = run(args, root)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{args.task}-{args.base}-{args.labs}labs-r{args.rounds}e{args.local_epochs}"
    if args.dp_clipping_norm > 0:
        name += f"-dp{args.dp_clipping_norm}-{args.dp_noise_multiplier}"
    path = args.out / f"{name}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    data = downstream_task_path(args.task)
    files = split_dataset(data, args.labs, root / "data")
    base = "scratch"
    if args.base != "scratch":
        import_moe18(moe18_dir(), root / "moe18")
        base = str(root / "moe18" / args.base)
    backbone = get_backbone("cgcnn")
    full = prepare(load_dataset(data), backbone, "seed0")
    test_g, test_y = full.part("test")

    def test_mae(folder: Path) -> float:
        loaded = load_module(folder)
        model = model_from_module(backbone, loaded)
        pred = loaded.card.normalizer.denormalize(predict_standardized(backbone, model, test_g))
        return float(np.mean(np.abs(pred - test_y)))

    keys = []
    for i in range(args.labs):
        keys.append(root / f"lab{i}.pem")
        save_private_key(keys[-1], generate_keypair().private)
    spec = RunSpec(task=args.task, property=full.dataset.target, unit=full.dataset.unit,
                   out=str(root / "federated"), base=base, rounds=args.rounds,
                   local_epochs=args.local_epochs, lr=args.lr, expected_labs=args.labs,
                   min_labs=args.labs, round_timeout=3600.0,
                   dp_clipping_norm=args.dp_clipping_norm,
                   dp_noise_multiplier=args.dp_noise_multiplier).with_nonce()
    tick = time.perf_counter()
    with local_federation(root / "flower") as fed:
        for f, k in zip(files, keys, strict=True):
            fed.add_lab({"data": str(f), "key": str(k)})
        fed.wait(fed.start_run(spec), spec, timeout=6 * 3600)
    fed_seconds = time.perf_counter() - tick
    card = load_module(Path(spec.out)).card
    rounds_detail = card.extra["federation"]["rounds"]

    epochs = args.rounds * args.local_epochs
    config = TrainConfig(epochs=epochs, patience=epochs, lr=args.lr)
    init = None if base == "scratch" else load_module(Path(base))
    tick = time.perf_counter()
    train_module(full, backbone, kind="full", config=config, out=root / "central", init=init)
    central_seconds = time.perf_counter() - tick
    alone, alone_seconds = [], 0.0
    for i, f in enumerate(files):
        tick = time.perf_counter()
        train_module(prepare(load_dataset(f), backbone, "seed0"), backbone, kind="full",
                     config=config, out=root / f"alone{i}", init=init)
        alone_seconds += time.perf_counter() - tick
        alone.append(test_mae(root / f"alone{i}"))
    federated, central = test_mae(Path(spec.out)), test_mae(root / "central")
    return {
        "task": args.task, "labs": args.labs, "base": args.base, "rounds": args.rounds,
        "local_epochs": args.local_epochs, "lr": args.lr,
        "dp": {"clipping_norm": args.dp_clipping_norm,
               "noise_multiplier": args.dp_noise_multiplier},
        "test_mae": {"federated": federated, "central": central, "alone": alone,
                     "alone_mean": float(np.mean(alone)),
                     "train_mean_predictor": card.metrics.get("test_mae_train_mean")},
        "ratios": {"federated_over_central": federated / central,
                   "federated_over_alone_mean": federated / float(np.mean(alone))},
        "best_round": card.metrics.get("best_round"),
        "seconds": {"federated_wall": fed_seconds, "central": central_seconds,
                    "alone_total": alone_seconds},
        "rounds_detail": rounds_detail,
    }


if __name__ == "__main__":
    main()
