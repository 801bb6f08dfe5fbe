"""The compose entry point: the one orchestration behind the CLI, the Python API and benchmarks.

``moma-client compose``, :func:`moma.api.compose` and ``benchmarks/amc_results.py`` all build a
:class:`ComposeRequest` and call :func:`run`, which

1. checks every argument (strategy, merge, head, kNN layer, kind, backbone, device, that the
   strategy has the modules and the base it needs) before any data is read;
2. loads the dataset, adds candidates from elsewhere (the CLI's hub fetch) once the task name
   is known, featurizes (cached), adds candidates chosen from the training split (the CLI's
   hub pre-selection, computed locally), and keeps the candidates the leakage rule allows
   (:mod:`moma.amc.leakage`);
3. composes, fine-tunes and writes the report, module and figures
   (:func:`moma.amc.pipeline.run_compose`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moma.amc.compose import ComposeOptions
from moma.amc.pipeline import ComposeResult, run_compose, subsample_train
from moma.amc.registry import Strategy
from moma.amc.screening import (
    OVERLAP_POLICIES,
    Screening,
    owner_keys,
    screen_candidates,
    screen_overlap,
)
from moma.arguments import check_compose_arguments
from moma.backbones.base import Graph
from moma.backbones.registry import get_backbone
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.data.units import with_units
from moma.errors import MomaError
from moma.modules.store import LoadedModule, load_module
from moma.training.loop import EpochStats, TrainConfig
from moma.uncertainty.conformal import DEFAULT_COVERAGE, check_coverage
from moma.uncertainty.ranges import PhysicalRange, apply_range, parse_range


def paper_fine_tune() -> TrainConfig:
    """The paper's fine-tuning defaults: batch 32, lr 8e-5 (head 10x), 60 epochs, patience 10."""
    return TrainConfig(epochs=60, batch_size=32, lr=8e-5, head_lr_factor=10.0, patience=10)


@dataclass
class ComposeRequest:
    """Everything a compose needs; nothing here has been read or checked yet."""

    data: str | Path | Dataset
    out: Path
    candidates: Sequence[Path | LoadedModule] = ()
    """Module folders (searched recursively) and/or modules already loaded (always offered)."""
    strategy: str = "amc"
    merge: str = "auto"
    kind: str = "full"
    head: str = "fresh"
    backbone: str = "cgcnn"
    task: str | None = None
    target: str | None = None
    split: str = "seed0"
    train_size: int | None = None
    skip_invalid: bool = False
    k: int = 5
    knn_layer: str = "pooled"
    threshold: float = 1e-3
    solver: str = "CLARABEL"
    base_module: Path | LoadedModule | None = None
    base_dirs: Sequence[Path] = ()
    """Further folders where an adapter module's base may be found."""
    exclude_tasks: Sequence[str] = ()
    """Tasks whose modules are never candidates, besides the task itself."""
    train: TrainConfig = field(default_factory=paper_fine_tune)
    seed: int = 0
    guard: bool = True
    """Also fine-tune the base (or best single module) and keep the lower validation MAE."""
    coverage: float = DEFAULT_COVERAGE
    physical_range: str | PhysicalRange | None = None
    """``LOW:HIGH`` or a range; None: the task's declared one (moma.uncertainty.ranges)."""
    range_policy: str = "clip"
    overlap: str = "exclude"
    """Candidates whose data fingerprint matches held-out structures: exclude or flag."""
    unit: str | None = None
    property: str | None = None

    def options(self, base_dirs: Sequence[Path] = (),
                base_module: LoadedModule | None = None) -> ComposeOptions:
        rng = (parse_range(self.physical_range) if isinstance(self.physical_range, str)
               else self.physical_range)
        return ComposeOptions(strategy=self.strategy, merge=self.merge, kind=self.kind, k=self.k,
                              threshold=self.threshold, solver=self.solver, train=self.train,
                              base_dirs=tuple(base_dirs), base_module=base_module,
                              head=self.head, knn_layer=self.knn_layer, guard=self.guard,
                              coverage=self.coverage, physical_range=rng,
                              range_policy=self.range_policy)


@dataclass
class ComposeHooks:
    """Optional callbacks: progress displays and candidates that depend on the task's name."""

    on_dataset: Callable[[Dataset], None] | None = None
    more_candidates: Callable[[str], Sequence[Path]] | None = None
    """Given the task name, further candidate folders (the CLI's hub fetch)."""
    after_prepare: Callable[[str, Sequence[Graph], np.ndarray],
                            tuple[Sequence[Path], dict[str, Any]]] | None = None
    """Given the task name and the training split compose will use (graphs and labels, after
    ``train_size``), further candidate folders and a report section stored under
    ``preselect`` (the CLI's hub pre-selection; it must keep the data on this machine)."""
    more_base_dirs: Sequence[Path] = ()
    """Where ``more_candidates`` / ``after_prepare`` keep modules (searched for adapter bases)."""
    on_featurize: Callable[[int, int], None] | None = None
    on_module: Callable[[int, int], None] | None = None
    on_epoch: Callable[[int, EpochStats, bool], None] | None = None
    """Validation MAE in target units; part -1 is the guard's baseline."""
    on_notice: Callable[[str], None] | None = None
    """A one-line notice for the user (e.g. a dataset without a unit)."""


def validate(request: ComposeRequest, *, more_candidates: bool = False) -> Strategy:
    """Refuse a request that cannot run, before any data is read; returns its strategy."""
    strategy = check_compose_arguments(
        strategy=request.strategy, merge=request.merge, kind=request.kind, head=request.head,
        knn_layer=request.knn_layer, backbone=request.backbone, device=request.train.device,
        train_size=request.train_size,
        has_candidates=bool(request.candidates) or more_candidates,
        has_base_module=request.base_module is not None)
    check_coverage(request.coverage)
    apply_range([], None, request.range_policy)
    if request.overlap not in OVERLAP_POLICIES:
        raise MomaError(f"--overlap {request.overlap!r}: choose " + " or ".join(OVERLAP_POLICIES))
    return strategy


def run(request: ComposeRequest, hooks: ComposeHooks | None = None) -> ComposeResult:
    """Check, load, compose and write ``request.out``; see the module docstring."""
    hooks = hooks or ComposeHooks()
    fetches = hooks.more_candidates is not None or hooks.after_prepare is not None
    strategy = validate(request, more_candidates=fetches)
    base_module = request.base_module
    if isinstance(base_module, str | Path):
        base_module = load_module(Path(base_module))
    net = get_backbone(request.backbone)
    dataset = (request.data if isinstance(request.data, Dataset) else
               load_dataset(request.data, task=request.task, target=request.target,
                            skip_invalid=request.skip_invalid))
    dataset, notice = with_units(dataset, unit=request.unit, prop=request.property)
    if notice and hooks.on_notice is not None:
        hooks.on_notice(notice)
    if hooks.on_dataset is not None:
        hooks.on_dataset(dataset)
    folders = [Path(c) for c in request.candidates if not isinstance(c, LoadedModule)]
    given = [c for c in request.candidates if isinstance(c, LoadedModule)]
    screening = Screening([])
    if strategy.needs_modules:
        if hooks.more_candidates is not None:
            folders += list(hooks.more_candidates(dataset.name))
        if not folders and not given and hooks.after_prepare is None:
            raise MomaError("compose needs candidate modules: pass --modules DIR and/or "
                            "--hub ADDR")
    prepared = prepare(dataset, net, request.split, seed=request.seed,
                       skip_invalid=request.skip_invalid, on_progress=hooks.on_featurize)
    extra: dict[str, Any] = {}
    if strategy.needs_modules and hooks.after_prepare is not None:
        train_idx = subsample_train(prepared.split["train"], request.train_size, request.seed)
        more, extra["preselect"] = hooks.after_prepare(
            dataset.name, [prepared.graphs[i] for i in train_idx],
            prepared.dataset.targets[train_idx])
        folders += list(more)
    base_dirs = (*folders, *request.base_dirs, *(hooks.more_base_dirs if fetches else ()))
    if strategy.needs_modules:
        screening = screen_candidates(folders, backbone=request.backbone, kind=request.kind,
                                      exclude_task=dataset.name,
                                      exclude_tasks=request.exclude_tasks,
                                      base_dirs=base_dirs, given=given)
        # local only: the owner's held-out structures against published fingerprints
        screen_overlap(screening, owner_keys(prepared.dataset, prepared.split), request.overlap)
    return run_compose(prepared, net, screening.modules, request.options(base_dirs, base_module),
                       Path(request.out), seed=request.seed, train_size=request.train_size,
                       on_module=hooks.on_module, on_epoch=hooks.on_epoch,
                       screening={**screening.report_json(), **extra})


def compose(data: str | Path | Dataset, candidates: Sequence[Path | str | LoadedModule] = (),
            strategy: str = "amc", *, out: Path | str | None = None,
            train: TrainConfig | None = None, **options: object) -> ComposeResult:
    """Compose ``candidates`` (module folders or loaded modules) for ``data``.

    ``data`` is a dataset (:class:`moma.data.records.Dataset`) or anything ``--data`` takes;
    ``out`` defaults to a new temporary folder; ``train`` defaults to the paper's fine-tuning
    settings; further keywords are the fields of :class:`ComposeRequest` (``merge``, ``kind``,
    ``head``, ``backbone``, ``split``, ``train_size``, ``base_module``, ``seed``, ...). The
    result holds the report, its metrics and the composed module (``result.model()``).
    """
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="moma-compose-"))
    items = [c if isinstance(c, LoadedModule) else Path(c) for c in candidates]
    request = ComposeRequest(data=data, out=folder, candidates=items, strategy=strategy,
                             train=train or paper_fine_tune(), **options)  # type: ignore[arg-type]
    return run(request)
