"""Train one module on a dataset: the one path behind ``moma-client train`` and the API.

Arguments are checked before anything is read; then the dataset is loaded, featurized (cached)
and split, optionally subsampled (``max_train``), and :func:`moma.training.run.train_module`
trains and saves the module (test split touched once, for the card).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moma.backbones.registry import check_backbone_name, get_backbone, has_pretrained_base
from moma.data.prepared import PreparedData, prepare
from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.errors import MomaError
from moma.modules.store import LoadedModule, load_module
from moma.training.loop import EpochStats, TrainConfig, resolve_device
from moma.training.modeling import KINDS
from moma.training.run import TrainOutcome, train_module


@dataclass
class TrainHooks:
    """Optional progress callbacks."""

    on_dataset: Callable[[Dataset], None] | None = None
    on_featurize: Callable[[int, int], None] | None = None
    on_prepared: Callable[[PreparedData], None] | None = None
    on_epoch: Callable[[EpochStats, bool], None] | None = None


def validate(*, backbone: str, kind: str, init: object, config: TrainConfig,
             max_train: int | None = None) -> None:
    """Refuse arguments that cannot work, before any data is read."""
    check_backbone_name(backbone)
    if kind not in KINDS:
        raise MomaError(f"unknown module kind {kind!r}; choose full or adapter")
    resolve_device(config.device)
    if max_train is not None and max_train < 2:
        raise MomaError("--max-train must be at least 2")
    if kind == "adapter" and init is None and not has_pretrained_base(backbone):
        raise MomaError(
            f"adapter modules need a pretrained base, and {backbone} has none built in: "
            "pass --init MODULE (a full module, e.g. an imported MoE-(18) module)"
        )


def train(data: str | Path | Dataset, out: str | Path, *, backbone: str = "cgcnn",
          kind: str = "full", init: str | Path | LoadedModule | None = None,
          task: str | None = None, target: str | None = None, split: str = "seed0",
          config: TrainConfig | None = None, max_train: int | None = None,
          name: str | None = None, skip_invalid: bool = False,
          hooks: TrainHooks | None = None) -> TrainOutcome:
    """Train a ``kind`` module of ``backbone`` on ``data`` and save it to ``out``.

    ``init``: start from this full module instead of the backbone's pretrained weights (or a
    seeded random initialization); ``config``: epochs, learning rate, seed, device...
    (:class:`moma.training.loop.TrainConfig`); ``max_train``: a seeded subsample of the
    training split. Returns the card, the training history and the metrics.
    """
    config = config or TrainConfig()
    hooks = hooks or TrainHooks()
    validate(backbone=backbone, kind=kind, init=init, config=config, max_train=max_train)
    net = get_backbone(backbone)
    dataset = (data if isinstance(data, Dataset) else
               load_dataset(data, task=task, target=target, skip_invalid=skip_invalid))
    init_module = load_module(Path(init)) if isinstance(init, str | Path) else init
    if hooks.on_dataset is not None:
        hooks.on_dataset(dataset)
    prepared = prepare(dataset, net, split, seed=config.seed, skip_invalid=skip_invalid,
                       on_progress=hooks.on_featurize)
    if hooks.on_prepared is not None:
        hooks.on_prepared(prepared)
    if max_train is not None and max_train < len(prepared.split["train"]):
        rng = np.random.default_rng(config.seed)
        keep = sorted(rng.choice(prepared.split["train"], size=max_train, replace=False).tolist())
        prepared.split = {**prepared.split, "train": keep}
    return train_module(prepared, net, kind=kind, config=config, out=Path(out),
                        init=init_module, name=name, on_epoch=hooks.on_epoch)
