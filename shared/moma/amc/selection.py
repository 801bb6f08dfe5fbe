"""AMC module selection: encode, estimate each module's fit by leave-one-out kNN, weigh.

Adaptive module composition (MoMa, DESIGN.md section 5) asks, without training anything, how
well each hub module's representation suits the new task. Every module ``g_j`` encodes the
training structures (``X_j = g_j(structures)``, graphs built once and shared by all modules of
the backbone); leave-one-out kNN label propagation on ``X_j`` predicts every training label from
its 5 nearest neighbours (``yhat_j``); the weights solve

    w = argmin_{w >= 0, sum w = 1} (1/m) || [yhat_1 ... yhat_N] w - y ||^2 .

A module whose embedding places structures with similar labels together gets a low proxy error
and, if it adds something the others lack, weight. Nothing here looks at validation or test data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moma.amc.head_refit import last_head_linear
from moma.amc.knn import loo_knn_predict, proxy_mae
from moma.amc.registry import KNN_LAYERS
from moma.amc.weights import solve_module_weights
from moma.backbones.base import Backbone, BackboneModel, Graph
from moma.errors import MomaError
from moma.modules.loading import model_from_module
from moma.modules.store import LoadedModule
from moma.training.loop import batches, embed_graphs


@dataclass
class Selection:
    """AMC's answer for one training set: per-module proxies and simplex weights."""

    modules: list[LoadedModule]
    weights: np.ndarray
    proxy_mae: np.ndarray
    ensemble_proxy_mae: float
    timings: dict[str, float] = field(default_factory=dict)
    solver: str = ""

    @property
    def names(self) -> list[str]:
        return [m.card.name for m in self.modules]

    def ranked(self) -> list[tuple[str, float, float]]:
        order = np.argsort(-self.weights)
        return [(self.names[i], float(self.weights[i]), float(self.proxy_mae[i])) for i in order]

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"name": m.card.name, "module_id": m.module_id, "task": m.card.task,
             "weight": float(w), "proxy_mae": float(p)}
            for m, w, p in zip(self.modules, self.weights, self.proxy_mae, strict=True)
        ]


@torch.no_grad()
def head_inputs(backbone: Backbone, model: BackboneModel, graphs: Sequence[Graph], *,
                batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """The input of the head's output layer for every graph (eval mode)."""
    captured: list[torch.Tensor] = []
    hook = last_head_linear(model).register_forward_hook(
        lambda _m, args, _out: captured.append(args[0].detach().double().cpu()))
    try:
        model.eval()
        for _, batch in batches(backbone, graphs, range(len(graphs)), batch_size):
            model(batch.to(device))
    finally:
        hook.remove()
    return torch.cat(captured).reshape(len(graphs), -1).numpy()


def encode(backbone: Backbone, modules: Sequence[LoadedModule], graphs: Sequence[Graph], *,
           device: str = "cpu", base_dirs: Sequence[Path] = (), layer: str = "pooled",
           on_module: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Each module's embeddings of the same graphs (eval mode, no grad)."""
    if layer not in KNN_LAYERS:
        raise MomaError(f"unknown kNN layer {layer!r}; choose one of " + ", ".join(KNN_LAYERS))
    out = []
    for n, module in enumerate(modules, start=1):
        model = model_from_module(backbone, module, base_dirs).to(device)
        if layer == "head":
            out.append(head_inputs(backbone, model, graphs, device=device))
        else:
            out.append(embed_graphs(backbone, model, graphs, batch_size=64, device=device))
        if on_module is not None:
            on_module(n, len(modules))
    return out


def select(backbone: Backbone, modules: Sequence[LoadedModule], graphs: Sequence[Graph],
           targets: np.ndarray, *, k: int = 5, solver: str = "CLARABEL", device: str = "cpu",
           base_dirs: Sequence[Path] = (), layer: str = "pooled",
           on_module: Callable[[int, int], None] | None = None) -> Selection:
    """Run AMC selection on a training set (targets in their own units)."""
    if len(graphs) < 2:
        raise MomaError("AMC needs at least 2 training structures; use a larger --train-size")
    t0 = time.perf_counter()
    embeddings = encode(backbone, modules, graphs, device=device, base_dirs=base_dirs,
                        layer=layer, on_module=on_module)
    t1 = time.perf_counter()
    y = np.asarray(targets, dtype=np.float64)
    proxies = np.stack([loo_knn_predict(x, y, k=k) for x in embeddings], axis=1)
    t2 = time.perf_counter()
    solution = solve_module_weights(proxies, y, solver=solver)
    t3 = time.perf_counter()
    per_module = np.array([proxy_mae(proxies[:, j], y) for j in range(len(modules))])
    return Selection(
        modules=list(modules),
        weights=solution.weights,
        proxy_mae=per_module,
        ensemble_proxy_mae=proxy_mae(proxies @ solution.weights, y),
        timings={"encode_s": t1 - t0, "knn_s": t2 - t1, "qp_s": t3 - t2},
        solver=solution.solver,
    )
