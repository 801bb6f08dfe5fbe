"""Full and adapter modules on both backbones, trained on whole real tasks.

Run: ``.venv/bin/python benchmarks/bench_train_tasks.py [--tasks jarvis_2d_eform] [--epochs 40]``.
For each (backbone, kind) it trains on the task's published ``seed0`` split with the project's
own ``train_module`` (the same code as ``moma-client train``) and prints validation and test MAE
beside the train-mean and train-median predictors, the epochs run and training throughput.
CGCNN starts from the imported MoE-(18) ``mp_eform`` module, CHGNet from its pretrained weights.
Results are appended to ``benchmarks/results/train_tasks.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from moma.backbones.registry import get_backbone
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.modules.moe18 import import_moe18
from moma.modules.store import load_module
from moma.paths import downstream_task_path, moe18_dir
from moma.training.loop import TrainConfig
from moma.training.run import train_module

OUT = Path(__file__).resolve().parent / "results" / "train_tasks.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="jarvis_2d_eform")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--runs", default="cgcnn-full,cgcnn-adapter,chgnet-full,chgnet-adapter")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import_moe18(moe18_dir(), Path(tmp) / "moe18")
        mp_eform = load_module(Path(tmp) / "moe18" / "mp_eform")
        for task in args.tasks.split(","):
            dataset = load_dataset(downstream_task_path(task))
            for run in args.runs.split(","):
                backbone_name, kind = run.split("-")
                backbone = get_backbone(backbone_name)
                data = prepare(dataset, backbone, "seed0")
                config = TrainConfig(epochs=args.epochs, batch_size=32,
                                     lr=1e-3 if kind == "adapter" else 3e-4,
                                     head_lr_factor=3.0, patience=10, seed=0)
                tick = time.perf_counter()
                outcome = train_module(data, backbone, kind=kind, config=config,
                                       out=Path(tmp) / f"{task}-{run}",
                                       init=mp_eform if backbone_name == "cgcnn" else None)
                m = outcome.metrics
                row = {"task": task, "backbone": backbone_name, "kind": kind,
                       "val_mae": m["val_mae"], "test_mae": m["test_mae"],
                       "test_mae_train_mean": m["test_mae_train_mean"],
                       "test_mae_train_median": m["test_mae_train_median"],
                       "epochs_run": int(m["epochs_run"]), "best_epoch": int(m["best_epoch"]),
                       "train_structures_per_s": outcome.result.structures_per_second,
                       "wall_s": time.perf_counter() - tick}
                print(json.dumps(row), flush=True)
                OUT.parent.mkdir(parents=True, exist_ok=True)
                with OUT.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
