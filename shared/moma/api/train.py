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

from moma.arguments import check_train_arguments
from moma.backbones.registry import get_backbone
from moma.data.prepared import PreparedData, prepare
from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.data.units import with_units
from moma.modules.store import LoadedModule, load_module
from moma.training.loop import EpochStats, TrainConfig
from moma.training.run import TrainOutcome, TrustOptions, train_module
from moma.uncertainty.conformal import check_coverage
from moma.uncertainty.ranges import apply_range


@dataclass
class TrainHooks:
    """Optional progress callbacks."""

    on_dataset: Callable[[Dataset], None] | None = None
    on_featurize: Callable[[int, int], None] | None = None
    on_prepared: Callable[[PreparedData], None] | None = None
    on_epoch: Callable[[EpochStats, bool], None] | None = None
    """Validation MAE in target units."""
    on_notice: Callable[[str], None] | None = None
    """A one-line notice for the user (e.g. a dataset without a unit)."""


def train(data: str | Path | Dataset, out: str | Path, *, backbone: str = "cgcnn",
          kind: str = "full", init: str | Path | LoadedModule | None = None,
          task: str | None = None, target: str | None = None, split: str = "seed0",
          config: TrainConfig | None = None, max_train: int | None = None,
          name: str | None = None, skip_invalid: bool = False,
          hooks: TrainHooks | None = None, trust: TrustOptions | None = None,
          unit: str | None = None, prop: str | None = None) -> TrainOutcome:
    """Train a ``kind`` module of ``backbone`` on ``data`` and save it to ``out``.

    ``init``: start from this full module instead of the backbone's pretrained weights (or a
    seeded random initialization); ``config``: epochs, learning rate, seed, device...
    (:class:`moma.training.loop.TrainConfig`); ``max_train``: a seeded subsample of the
    training split; ``trust``: interval coverage, physical range and policy, and whether to
    publish the data fingerprint (:class:`moma.training.run.TrustOptions`); ``unit``/``prop``:
    the target's unit and property name (default: the data's; the unit falls back to the
    ``init`` module's). Returns the card, the training history and the metrics.
    """
    config = config or TrainConfig()
    hooks = hooks or TrainHooks()
    trust = trust or TrustOptions()
    check_train_arguments(backbone=backbone, kind=kind, device=config.device,
                          has_init=init is not None, max_train=max_train)
    check_coverage(trust.coverage)
    apply_range([], None, trust.range_policy)
    net = get_backbone(backbone)
    dataset = (data if isinstance(data, Dataset) else
               load_dataset(data, task=task, target=target, skip_invalid=skip_invalid))
    init_module = load_module(Path(init)) if isinstance(init, str | Path) else init
    dataset, notice = with_units(dataset, unit=unit, prop=prop,
                                 parent_unit=init_module.card.unit if init_module else None)
    if notice and hooks.on_notice is not None:
        hooks.on_notice(notice)
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
                        init=init_module, name=name, on_epoch=hooks.on_epoch, trust=trust)
