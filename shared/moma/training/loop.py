"""The training loop shared by ``train``, ``compose`` and the federated ClientApp.

Defaults follow DESIGN.md section 4: L1 loss on standardized targets (the metric is MAE and
several targets are heavy-tailed, so a squared loss chases outliers), Adam, early stopping on
the validation MAE, the best-validation weights restored at the end. The head may learn faster
than the backbone (``head_lr_factor``), which matters when a pretrained backbone meets a new
task. For adapter training every backbone tensor, BatchNorm statistics included, stays as
loaded: only adapters and the head are in train mode and receive gradients.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from moma.backbones.adapters import ADAPTER_PREFIX, freeze_for_adapter_training, has_adapters
from moma.backbones.base import Backbone, BackboneModel, Graph


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (recorded on the module card)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    head_lr_factor: float = 1.0
    weight_decay: float = 0.0
    patience: int = 20
    loss: str = "l1"
    seed: int = 0
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_mae: float
    seconds: float


@dataclass
class TrainResult:
    """Best-validation state and the history that led to it (MAE in standardized units)."""

    best_state: dict[str, Tensor]
    best_epoch: int
    best_val_mae: float
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    structures_seen: int = 0

    @property
    def structures_per_second(self) -> float:
        return self.structures_seen / self.seconds if self.seconds > 0 else float("nan")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run under ``--seed`` repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; a clear error when CUDA is asked for but
    absent."""
    from moma.errors import MomaError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MomaError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return torch.device(name)


def set_train_mode(model: BackboneModel, adapter_only: bool) -> None:
    """Train mode for what is trained; frozen parts stay in eval (BatchNorm statistics fixed)."""
    if not adapter_only:
        model.train()
        return
    model.eval()
    for name, module in model.named_modules():
        if name.startswith(ADAPTER_PREFIX.rstrip(".")) or (name and model.is_head_key(name + ".")):
            module.train()


def _loss_fn(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if name == "l1":
        return nn.functional.l1_loss
    if name == "mse":
        return nn.functional.mse_loss
    if name == "huber":
        return nn.functional.smooth_l1_loss
    from moma.errors import MomaError

    raise MomaError(f"unknown loss {name!r}; choose l1, mse or huber")


def batches(backbone: Backbone, graphs: Sequence[Graph], order: Sequence[int],
            batch_size: int) -> list[tuple[list[int], Any]]:
    """Collated batches over ``order`` (index lists kept for targets)."""
    out = []
    for start in range(0, len(order), batch_size):
        idx = list(order[start : start + batch_size])
        out.append((idx, backbone.collate([graphs[i] for i in idx])))
    return out


@torch.no_grad()
def predict_standardized(backbone: Backbone, model: BackboneModel, graphs: Sequence[Graph], *,
                         batch_size: int = 128, device: str | torch.device = "cpu") -> np.ndarray:
    """Eval-mode standardized predictions, one per graph."""
    model.eval()
    outputs = [model(batch.to(device)).double().cpu()
               for _, batch in batches(backbone, graphs, range(len(graphs)), batch_size)]
    return torch.cat(outputs).numpy() if outputs else np.zeros(0)


@torch.no_grad()
def embed_graphs(backbone: Backbone, model: BackboneModel, graphs: Sequence[Graph], *,
                 batch_size: int = 128, device: str | torch.device = "cpu") -> np.ndarray:
    """Eval-mode per-crystal embeddings, shape ``(len(graphs), embedding_dim)``."""
    model.eval()
    outputs = [model.embed(batch.to(device)).double().cpu()
               for _, batch in batches(backbone, graphs, range(len(graphs)), batch_size)]
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, model.embedding_dim))


def fit(
    backbone: Backbone,
    model: BackboneModel,
    train_graphs: Sequence[Graph],
    train_targets: np.ndarray,
    val_graphs: Sequence[Graph],
    val_targets: np.ndarray,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochStats, bool], None] | None = None,
) -> TrainResult:
    """Train ``model`` on standardized targets; return the best-validation state.

    ``train_targets`` and ``val_targets`` are already standardized. When the model carries
    adapters, only adapters and head are trained (the caller inserted them).
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model.to(device)
    adapter_only = has_adapters(model)
    if adapter_only:
        freeze_for_adapter_training(model)
    else:
        for param in model.parameters():
            param.requires_grad = True
    head = [p for n, p in model.named_parameters() if p.requires_grad and model.is_head_key(n)]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not model.is_head_key(n)]
    optimizer = torch.optim.Adam(
        [{"params": body, "lr": config.lr},
         {"params": head, "lr": config.lr * config.head_lr_factor}],
        weight_decay=config.weight_decay,
    )
    loss_fn = _loss_fn(config.loss)
    y_train = torch.as_tensor(train_targets, dtype=torch.float32)
    rng = np.random.default_rng(config.seed)
    val_batches = batches(backbone, val_graphs, range(len(val_graphs)), 256)
    best_state = copy.deepcopy(model.state_dict())
    best_mae, best_epoch, since_best = math.inf, 0, 0
    history: list[EpochStats] = []
    seen = 0
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        tick = time.perf_counter()
        set_train_mode(model, adapter_only)
        order = rng.permutation(len(train_graphs)).tolist()
        total, count = 0.0, 0
        for idx, batch in batches(backbone, train_graphs, order, config.batch_size):
            if len(idx) < 2 and not adapter_only:
                continue  # BatchNorm cannot train on a single structure
            pred = model(batch.to(device))
            loss = loss_fn(pred, y_train[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        seen += count
        val_mae = _mae_on(model, val_batches, val_targets, device)
        improved = val_mae < best_mae - 1e-9
        if improved:
            best_mae, best_epoch, since_best = val_mae, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        stats = EpochStats(epoch, total / max(count, 1), val_mae, time.perf_counter() - tick)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats, improved)
        if since_best >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_state, best_epoch, best_mae, history,
                       time.perf_counter() - start, seen)


@torch.no_grad()
def _mae_on(model: BackboneModel, val_batches: list[tuple[list[int], Any]],
            targets: np.ndarray, device: torch.device) -> float:
    model.eval()
    if not val_batches:
        return math.nan
    preds = torch.cat([model(b.to(device)).double().cpu() for _, b in val_batches]).numpy()
    return float(np.mean(np.abs(preds - targets)))
