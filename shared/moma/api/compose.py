"""The compose entry point: the one orchestration behind the CLI, the Python API and benchmarks.

``moma-client compose``, :func:`moma.api.compose` and ``benchmarks/amc_results.py`` all build a
:class:`ComposeRequest` and call :func:`run`, which

1. checks every argument (strategy, merge, head, kNN layer, kind, backbone, device, that the
   strategy has the modules and the base it needs) before any data is read;
2. loads the dataset, adds candidates from elsewhere (the CLI's hub fetch) once the task name
   is known, and keeps the candidates the leakage rule allows (:mod:`moma.amc.leakage`);
3. featurizes (cached), composes, fine-tunes and writes the report, module and figures
   (:func:`moma.amc.pipeline.run_compose`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from moma.amc.compose import ComposeOptions, check_options
from moma.amc.pipeline import ComposeResult, run_compose
from moma.amc.registry import Strategy, get_strategy
from moma.amc.selection import candidate_modules
from moma.backbones.registry import check_backbone_name, get_backbone, has_pretrained_base
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.errors import MomaError
from moma.modules.store import LoadedModule, load_module
from moma.training.loop import EpochStats, TrainConfig, resolve_device


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

    def options(self, base_dirs: Sequence[Path] = (),
                base_module: LoadedModule | None = None) -> ComposeOptions:
        return ComposeOptions(strategy=self.strategy, merge=self.merge, kind=self.kind, k=self.k,
                              threshold=self.threshold, solver=self.solver, train=self.train,
                              base_dirs=tuple(base_dirs), base_module=base_module,
                              head=self.head, knn_layer=self.knn_layer)


@dataclass
class ComposeHooks:
    """Optional callbacks: progress displays and candidates that depend on the task's name."""

    on_dataset: Callable[[Dataset], None] | None = None
    more_candidates: Callable[[str], Sequence[Path]] | None = None
    """Given the task name, further candidate folders (the CLI's hub fetch)."""
    more_base_dirs: Sequence[Path] = ()
    """Where ``more_candidates`` keeps modules (searched for adapter bases)."""
    on_featurize: Callable[[int, int], None] | None = None
    on_module: Callable[[int, int], None] | None = None
    on_epoch: Callable[[int, EpochStats, bool], None] | None = None


def validate(request: ComposeRequest, *, more_candidates: bool = False) -> Strategy:
    """Refuse a request that cannot run, before any data is read; returns its strategy."""
    strategy = get_strategy(request.strategy)
    check_options(request.options())
    check_backbone_name(request.backbone)
    resolve_device(request.train.device)
    if request.train_size is not None and request.train_size < 2:
        raise MomaError("--train-size must be at least 2")
    if strategy.needs_modules and not request.candidates and not more_candidates:
        raise MomaError(f"--strategy {strategy.name} needs candidate modules: pass --modules DIR "
                        "and/or --hub ADDR")
    if (strategy.needs_base and request.base_module is None
            and not has_pretrained_base(request.backbone)):
        raise MomaError(f"--strategy {strategy.name} with {request.backbone} needs the base "
                        "module: pass --base-module (e.g. the imported mp_eform module)")
    return strategy


def run(request: ComposeRequest, hooks: ComposeHooks | None = None) -> ComposeResult:
    """Check, load, compose and write ``request.out``; see the module docstring."""
    hooks = hooks or ComposeHooks()
    strategy = validate(request, more_candidates=hooks.more_candidates is not None)
    base_module = request.base_module
    if isinstance(base_module, str | Path):
        base_module = load_module(Path(base_module))
    net = get_backbone(request.backbone)
    dataset = (request.data if isinstance(request.data, Dataset) else
               load_dataset(request.data, task=request.task, target=request.target,
                            skip_invalid=request.skip_invalid))
    if hooks.on_dataset is not None:
        hooks.on_dataset(dataset)
    folders = [Path(c) for c in request.candidates if not isinstance(c, LoadedModule)]
    given = [c for c in request.candidates if isinstance(c, LoadedModule)]
    candidates: list[LoadedModule] = []
    if strategy.needs_modules:
        if hooks.more_candidates is not None:
            folders += list(hooks.more_candidates(dataset.name))
        if folders:
            candidates = candidate_modules(folders, backbone=request.backbone, kind=request.kind,
                                           exclude_task=dataset.name,
                                           exclude_tasks=request.exclude_tasks)
        candidates += given
        if not candidates:
            raise MomaError("compose needs candidate modules: pass --modules DIR and/or "
                            "--hub ADDR")
    base_dirs = (*folders, *request.base_dirs,
                 *(hooks.more_base_dirs if hooks.more_candidates else ()))
    prepared = prepare(dataset, net, request.split, seed=request.seed,
                       skip_invalid=request.skip_invalid, on_progress=hooks.on_featurize)
    return run_compose(prepared, net, candidates, request.options(base_dirs, base_module),
                       Path(request.out), seed=request.seed, train_size=request.train_size,
                       on_module=hooks.on_module, on_epoch=hooks.on_epoch)


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
