"""Core speed: featurization, training throughput, loop overhead, embedding throughput.

Run: ``.venv/bin/python benchmarks/bench_core.py [--backbones cgcnn,chgnet] [--n 300]``.
Everything is measured in this one run on real structures from ``$MOMA_SHARED``; ratios compare
numbers measured side by side, so they hold on any machine.

- featurization: structures/s (cold, no cache) and the cached re-read;
- training: structures/s of :func:`moma.training.loop.fit` (full and adapter);
- loop overhead: ``fit`` against a bare PyTorch loop (Adam, L1) over the same collated batches
  in the same order; goal: within 10 %;
- embedding: structures/s per module (eval mode, no grad).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from moma.backbones.adapters import insert_adapters
from moma.backbones.registry import get_backbone
from moma.data.readers import load_dataset
from moma.graphs.cache import featurize
from moma.paths import downstream_task_path
from moma.training.loop import TrainConfig, batches, embed_graphs, fit


def bare_loop(backbone, model, graphs, y, epochs: int, batch_size: int, seed: int) -> float:
    """A plain PyTorch loop over the same batches ``fit`` would build; returns seconds."""
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(graphs)).tolist() for _ in range(epochs)]
    prebuilt = [batches(backbone, graphs, order, batch_size) for order in orders]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    target = torch.as_tensor(y, dtype=torch.float32)
    model.train()
    start = time.perf_counter()
    for epoch_batches in prebuilt:
        for idx, batch in epoch_batches:
            if len(idx) < 2:
                continue
            loss = torch.nn.functional.l1_loss(model(batch), target[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def run(backbone_name: str, n: int, epochs: int) -> dict[str, float]:
    backbone = get_backbone(backbone_name)
    dataset = load_dataset(downstream_task_path("jarvis_2d_eform"))
    items = [(r.id, r.structure) for r in dataset.records[:n]]
    y = dataset.targets[:n]
    y = (y - y.mean()) / y.std()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cold = featurize(backbone.featurizer(), items, cache=Path(tmp))
        warm = featurize(backbone.featurizer(), items, cache=Path(tmp))
    graphs = cold.graphs
    out["featurize_structures_per_s"] = len(items) / cold.seconds
    out["cache_read_structures_per_s"] = len(items) / warm.seconds
    config = TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, patience=epochs + 1)
    # Our loop on an empty validation set would stop early: give it a tiny one.
    val = graphs[:8]
    torch.manual_seed(0)
    model = _start(backbone)
    result = fit(backbone, model, graphs, y, val, y[:8], config)
    per_epoch_fit = result.seconds / epochs
    out["train_full_structures_per_s"] = result.structures_per_second
    torch.manual_seed(0)
    model = _start(backbone)
    bare = bare_loop(backbone, model, graphs, y, epochs, 32, 0) / epochs
    out["bare_loop_structures_per_s"] = len(graphs) / bare
    out["fit_over_bare_time_ratio"] = per_epoch_fit / bare
    torch.manual_seed(0)
    model = _start(backbone)
    insert_adapters(model)
    result = fit(backbone, model, graphs, y, val, y[:8], config)
    out["train_adapter_structures_per_s"] = result.structures_per_second
    start = time.perf_counter()
    embed_graphs(backbone, _start(backbone), graphs, batch_size=128)
    out["embed_structures_per_s"] = len(graphs) / (time.perf_counter() - start)
    return out


def _start(backbone):
    pretrained = backbone.pretrained_base()
    model = backbone.build()
    if pretrained is not None:
        model.load_state_dict(pretrained[0])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="cgcnn,chgnet")
    parser.add_argument("--n", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    for name in args.backbones.split(","):
        results[name] = run(name, args.n, args.epochs)
        print(name, json.dumps({k: round(v, 3) for k, v in results[name].items()}), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
