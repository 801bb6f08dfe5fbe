"""``moma-client compose``: adaptive module composition for a new task, on local data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.progress import Progress, TaskID

from moma.amc.registry import HEADS, KINDS, KNN_LAYERS, help_text, merges, strategies
from moma_client.cli.common import err, out, print_json, progress
from moma_client.cli.hub_options import (
    Ca,
    ClientCert,
    ClientKey,
    HubKey,
    Insecure,
    hub_candidate_folders,
)

if TYPE_CHECKING:
    from moma.training.loop import EpochStats


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
    strategy: Annotated[str, typer.Option(click_type=click.Choice(list(strategies())), help=help_text(strategies()))] = "amc",
    merge: Annotated[str, typer.Option(click_type=click.Choice(list(merges())), help=help_text(merges()))] = "auto",
    kind: Annotated[str, typer.Option(click_type=click.Choice(list(KINDS)), help=help_text(KINDS))] = "full",
    head: Annotated[str, typer.Option(click_type=click.Choice(list(HEADS)), help=help_text(HEADS))] = "fresh",
    k: Annotated[int, typer.Option(help="Neighbours of the kNN proxy.")] = 5,
    knn_layer: Annotated[str, typer.Option(click_type=click.Choice(list(KNN_LAYERS)), help="What feeds the kNN proxy: " + help_text(KNN_LAYERS))] = "pooled",
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
    from moma.api.compose import ComposeHooks, ComposeRequest, run
    from moma.training.loop import TrainConfig
    from moma_client.hub.cache import default_cache

    request = ComposeRequest(
        data=data, out=out_dir, candidates=list(modules), strategy=strategy, merge=merge,
        kind=kind, head=head, backbone=backbone, task=task, target=target, split=split,
        train_size=train_size, skip_invalid=skip_invalid, k=k, knn_layer=knn_layer,
        threshold=threshold, solver=solver, base_module=base_module, seed=seed,
        train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                          head_lr_factor=head_lr_factor, patience=patience, seed=seed,
                          device=device),
    )
    bars = ComposeBars(epochs)
    hooks = ComposeHooks(
        on_dataset=lambda dataset: err.print(dataset.report.summary()),
        more_candidates=(None if hub is None else lambda name: hub_candidate_folders(
            hub, hub_key, ca, client_cert, client_key, insecure, backbone=backbone, kind=kind,
            exclude_task=name)),
        more_base_dirs=(default_cache(),) if hub else (),
        on_featurize=bars.featurize, on_module=bars.module, on_epoch=bars.epoch,
    )
    try:
        result = run(request, hooks)
    finally:
        bars.close()
    report = result.report
    if json_output:
        print_json(report)
        return
    out.print(f"{report['task']} ({report['unit']}): strategy {report['strategy']}, "
              f"merge {report['merge']} ({report['merge_reason']})")
    for entry in sorted(report["candidates"], key=lambda e: -e.get("weight", 0.0))[:10]:
        if "weight" in entry:
            out.print(f"  {entry['name']:28s} weight {entry['weight']:.3f}  "
                      f"proxy MAE {entry['proxy_mae']:.4g}")
    m = report["metrics"]
    out.print(f"test MAE {m['test_mae']:.4g} (val {m['val_mae']:.4g}; train-mean predictor "
              f"{m['test_mae_train_mean']:.4g}, train-median {m['test_mae_train_median']:.4g})")
    out.print(f"report: {out_dir / 'report.json'}")


class ComposeBars:
    """Progress bars for graphs, encoding and fine-tuning, drawn from the first update on (so
    that nothing is drawn while arguments are checked or a hub is asked for candidates)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.bar: Progress | None = None
        self.ids: dict[str, TaskID] = {}

    def _update(self, name: str, **fields: Any) -> None:
        if self.bar is None:
            self.bar = progress()
            self.bar.start()
            for stage, total in (("graphs", 1), ("encoding", 1), ("fine-tune", self.epochs)):
                self.ids[stage] = self.bar.add_task(stage, total=total, info="")
        self.bar.update(self.ids[name], **fields)

    def featurize(self, done: int, total: int) -> None:
        self._update("graphs", completed=done, total=total)

    def module(self, done: int, total: int) -> None:
        self._update("encoding", completed=done, total=total)

    def epoch(self, part: int, stats: EpochStats, improved: bool) -> None:
        self._update("fine-tune", completed=stats.epoch,
                     info=f"part {part} val {stats.val_mae:.4f}{'*' if improved else ''}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
