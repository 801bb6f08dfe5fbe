"""``moma-client compose``: adaptive module composition for a new task, on local data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moma.amc.compose import ComposeOptions
from moma.amc.pipeline import run_compose
from moma.amc.selection import candidate_modules
from moma.backbones.registry import get_backbone
from moma.data.readers import load_dataset
from moma.errors import MomaError
from moma.modules.store import load_module
from moma.safe_text import for_markup
from moma.training.loop import EpochStats, TrainConfig
from moma.training.run import prepare
from moma_client.cli.common import err, out, print_json, progress
from moma_client.cli.hub_options import (
    Ca,
    ClientCert,
    ClientKey,
    HubKey,
    Insecure,
    hub_candidate_folders,
)
from moma_client.hub.cache import default_cache


def compose(
    data: Annotated[str, typer.Option(help="Dataset (same forms as train --data).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json, the composed module and figures.")],
    modules: Annotated[list[Path], typer.Option(help="Folder(s) of candidate modules.")] = [],  # noqa: B006
    hub: Annotated[str | None, typer.Option("--hub", help="Also take candidates from this hub: approved, verified, cached in $MOMA_CACHE/modules (only listings, cards and downloads are requested).")] = None,
    hub_key: HubKey = None,
    ca: Ca = None,
    client_cert: ClientCert = None,
    client_key: ClientKey = None,
    insecure: Insecure = False,
    task: Annotated[str | None, typer.Option(help="Task name (default: the dataset's).")] = None,
    target: Annotated[str | None, typer.Option(help="Target column for multi-target data.")] = None,
    backbone: Annotated[str, typer.Option(help="cgcnn or chgnet.")] = "cgcnn",
    split: Annotated[str, typer.Option(help="Published split (seed0..seed4) or 'random'.")] = "seed0",
    train_size: Annotated[int | None, typer.Option(help="Few-shot: use N training structures.")] = None,
    strategy: Annotated[str, typer.Option(help="amc, select-average, all-average, random, backbone-ft or scratch.")] = "amc",
    merge: Annotated[str, typer.Option(help="auto, average (shared base only), top1 or ensemble.")] = "auto",
    kind: Annotated[str, typer.Option(help="full or adapter modules.")] = "full",
    head: Annotated[str, typer.Option(help="fresh (a new head, the paper's) or inherit (the composed head, refitted by an affine map to the target).")] = "fresh",
    k: Annotated[int, typer.Option(help="Neighbours of the kNN proxy.")] = 5,
    knn_layer: Annotated[str, typer.Option(help="What feeds the kNN: pooled (crystal embedding) or head (input of the head's output layer).")] = "pooled",
    threshold: Annotated[float, typer.Option(help="Drop modules below this weight.")] = 1e-3,
    solver: Annotated[str, typer.Option(help="cvxpy solver for the weights.")] = "CLARABEL",
    base_module: Annotated[Path | None, typer.Option(help="Base module for backbone-ft (CGCNN).")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 60,
    batch_size: Annotated[int, typer.Option(min=2)] = 32,
    lr: Annotated[float, typer.Option()] = 8e-5,
    head_lr_factor: Annotated[float, typer.Option(help="Head learning rate / backbone's.")] = 10.0,
    patience: Annotated[int, typer.Option()] = 10,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    skip_invalid: Annotated[bool, typer.Option(help="Drop invalid records (listed) instead of failing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compose modules for a dataset: AMC weights, merge, fine-tune, report (all local)."""
    net = get_backbone(backbone)
    dataset = load_dataset(data, task=task, target=target, skip_invalid=skip_invalid)
    err.print(dataset.report.summary())
    needs_modules = strategy not in ("backbone-ft", "scratch")
    folders = list(modules)
    if hub and needs_modules:
        folders += hub_candidate_folders(hub, hub_key, ca, client_cert, client_key, insecure,
                                         backbone=backbone, kind=kind, exclude_task=dataset.name)
    if needs_modules and not folders:
        raise MomaError("compose needs candidate modules: pass --modules DIR and/or --hub ADDR")
    candidates = (candidate_modules(folders, backbone=backbone, kind=kind,
                                    exclude_task=dataset.name) if needs_modules else [])
    options = ComposeOptions(
        strategy=strategy, merge=merge, kind=kind, k=k, threshold=threshold, solver=solver,
        head=head, knn_layer=knn_layer,
        train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                          head_lr_factor=head_lr_factor, patience=patience, seed=seed,
                          device=device),
        base_dirs=tuple(folders) + ((default_cache(),) if hub else ()),
        base_module=load_module(base_module) if base_module else None,
    )
    with progress() as bar:
        feat = bar.add_task("graphs", total=len(dataset), info="")
        prepared = prepare(dataset, net, split, seed=seed, skip_invalid=skip_invalid,
                           on_progress=lambda d, t: bar.update(feat, completed=d, total=t))
        enc = bar.add_task("encoding", total=max(1, len(candidates)), info="")
        tune = bar.add_task("fine-tune", total=epochs, info="")

        def on_epoch(part: int, stats: EpochStats, improved: bool) -> None:
            bar.update(tune, completed=stats.epoch,
                       info=f"part {part} val {stats.val_mae:.4f}{'*' if improved else ''}")

        result = run_compose(prepared, net, candidates, options, out_dir, seed=seed,
                             train_size=train_size,
                             on_module=lambda d, t: bar.update(enc, completed=d, total=t),
                             on_epoch=on_epoch)
    report = result.report
    if json_output:
        print_json(report)
        return
    if report.get("train_size_note"):
        err.print(f"note: {for_markup(report['train_size_note'])}")
    out.print(f"{for_markup(report['task'])} ({for_markup(report['unit'])}): strategy "
              f"{report['strategy']}, merge {report['merge']} ({report['merge_reason']})")
    for entry in sorted(report["candidates"], key=lambda e: -e.get("weight", 0.0))[:10]:
        if "weight" in entry:
            out.print(f"  {for_markup(entry['name']):28s} weight {entry['weight']:.3f}  "
                      f"proxy MAE {entry['proxy_mae']:.4g}")
    m = report["metrics"]
    out.print(f"test MAE {m['test_mae']:.4g} (val {m['val_mae']:.4g}; train-mean predictor "
              f"{m['test_mae_train_mean']:.4g}, train-median {m['test_mae_train_median']:.4g})")
    out.print(f"report: {out_dir / 'report.json'}")
