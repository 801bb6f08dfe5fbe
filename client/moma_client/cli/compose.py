"""``moma-client compose``: adaptive module composition for a new task, on local data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.progress import Progress, TaskID

from moma.amc.registry import HEADS, KNN_LAYERS, help_text, merges, strategies
from moma.arguments import check_compose_arguments
from moma.safe_text import for_markup
from moma_client.cli import options as o
from moma_client.cli.common import err, out, print_json, progress
from moma_client.cli.hub_options import (
    hub_candidate_folders,
    take_connection,
    with_connection_options,
)
from moma_client.cli.plain_progress import PlainProgress
from moma_client.cli.preselect_options import Preselect, hub_preselected_folders, parse_preselect
from moma_client.cli.trust_output import print_compose_trust
from moma_client.preselect import DEFAULT_TOP_K

if TYPE_CHECKING:
    from moma.data.records import Dataset
    from moma.training.loop import EpochStats


@with_connection_options
def compose(
    data: o.Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json, the composed module and figures.")],
    modules: Annotated[list[Path], typer.Option(help="Folder(s) of candidate modules.")] = [],  # noqa: B006
    hub: Annotated[str | None, typer.Option("--hub", help="Also take candidates from this hub: approved, verified, cached in $MOMA_CACHE/modules (only listings, cards and downloads are requested).")] = None,
    preselect: Preselect = str(DEFAULT_TOP_K),
    task: o.Task = None,
    target: o.Target = None,
    backbone: o.Backbone = "cgcnn",
    split: o.Split = "seed0",
    train_size: Annotated[int | None, typer.Option(help="Few-shot: use N training structures.")] = None,
    strategy: Annotated[str, typer.Option(click_type=click.Choice(list(strategies())), metavar="STRATEGY", help=help_text(strategies()))] = "amc",
    merge: Annotated[str, typer.Option(click_type=click.Choice(list(merges())), metavar="MERGE", help=help_text(merges()))] = "auto",
    kind: o.Kind = "full",
    head: Annotated[str, typer.Option(click_type=click.Choice(list(HEADS)), metavar="HEAD", help=help_text(HEADS))] = "fresh",
    k: Annotated[int, typer.Option(help="Neighbours of the kNN proxy.")] = 5,
    knn_layer: Annotated[str, typer.Option(click_type=click.Choice(list(KNN_LAYERS)), metavar="LAYER", help="What feeds the kNN proxy: " + help_text(KNN_LAYERS))] = "pooled",
    threshold: Annotated[float, typer.Option(help="Drop modules below this weight.")] = 1e-3,
    solver: Annotated[str, typer.Option(help="cvxpy solver for the weights.")] = "CLARABEL",
    base_module: Annotated[Path | None, typer.Option(help="Base module for backbone-ft (CGCNN).")] = None,
    epochs: o.Epochs = 60,
    batch_size: o.BatchSize = 32,
    lr: o.Lr = 8e-5,
    head_lr_factor: o.HeadLrFactor = 10.0,
    patience: o.Patience = 10,
    seed: o.Seed = 0,
    device: o.Device = "cpu",
    skip_invalid: o.SkipInvalid = False,
    guard: Annotated[bool, typer.Option("--guard/--no-guard", help="Also fine-tune the plain base (or the best single module) and keep the start with the lower validation MAE; --no-guard saves that time.")] = True,
    coverage: o.Coverage = 0.9,
    value_range: o.ValueRange = None,
    range_policy: o.RangePolicy = "clip",
    overlap: Annotated[str, typer.Option(click_type=click.Choice(["exclude", "flag"]), help="Candidates whose data fingerprint matches your validation/test structures: exclude or flag.")] = "exclude",
    unit: o.Unit = None,
    prop: o.Property = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    **connection_options: Any,
) -> None:
    """Compose modules for a dataset: AMC weights, merge, fine-tune, report (all local)."""
    connection = take_connection(connection_options)
    check_compose_arguments(strategy=strategy, merge=merge, kind=kind, head=head,
                            knn_layer=knn_layer, backbone=backbone, device=device,
                            train_size=train_size, has_candidates=bool(modules) or bool(hub),
                            has_base_module=base_module is not None)
    top_k = parse_preselect(preselect)
    from moma.api.compose import ComposeHooks, ComposeRequest, run
    from moma.backbones.registry import get_backbone
    from moma.training.loop import TrainConfig
    from moma_client.hub.cache import default_cache

    request = ComposeRequest(
        data=data, out=out_dir, candidates=list(modules), strategy=strategy, merge=merge,
        kind=kind, head=head, backbone=backbone, task=task, target=target, split=split,
        train_size=train_size, skip_invalid=skip_invalid, k=k, knn_layer=knn_layer,
        threshold=threshold, solver=solver, base_module=base_module, seed=seed,
        guard=guard, coverage=coverage, physical_range=value_range, range_policy=range_policy,
        overlap=overlap, unit=unit, property=prop,
        train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                          head_lr_factor=head_lr_factor, patience=patience, seed=seed,
                          device=device),
    )
    bars = ComposeBars(epochs)
    hooks = ComposeHooks(
        on_dataset=bars.dataset, on_notice=err.print,
        more_candidates=(None if hub is None or top_k is not None else
                         lambda name: hub_candidate_folders(
                             hub, connection,
                             backbone=backbone, kind=kind, exclude_task=name)),
        after_prepare=(None if hub is None or top_k is None else
                       lambda name, graphs, y: hub_preselected_folders(
                           hub, connection,
                           backbone=get_backbone(backbone), kind=kind, exclude_task=name,
                           graphs=graphs, targets=y, top_k=top_k)),
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
    if report.get("train_size_note"):
        err.print(f"note: {for_markup(report['train_size_note'])}")
    out.print(f"{for_markup(report['task'])} ({for_markup(report['unit'])}): strategy "
              f"{report['strategy']}, merge {report['merge']}. "
              f"{for_markup(report['merge_reason'])}")
    for entry in sorted(report["candidates"], key=lambda e: -e.get("weight", 0.0))[:10]:
        if "weight" in entry:
            out.print(f"  {for_markup(entry['name']):28s} weight {entry['weight']:.3f}  "
                      f"proxy MAE {entry['proxy_mae']:.4g}")
    print_compose_trust(report)
    m = report["metrics"]
    unit_s = f" {for_markup(report['unit'])}" if report["unit"] else ""
    out.print(f"test MAE {m['test_mae']:.4g}{unit_s} (val {m['val_mae']:.4g}; train-mean "
              f"predictor {m['test_mae_train_mean']:.4g}, train-median "
              f"{m['test_mae_train_median']:.4g})"
              + (" [FLAGGED: see above]" if report.get("flags") else ""))
    out.print(f"report: {out_dir / 'report.json'}")


class ComposeBars:
    """Progress bars for graphs, encoding and fine-tuning, drawn from the first update on (so
    that nothing is drawn while arguments are checked or a hub is asked for candidates)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.bar: Progress | PlainProgress | None = None
        self.ids: dict[str, TaskID] = {}
        self.unit = ""

    def dataset(self, dataset: Dataset) -> None:
        err.print(dataset.report.summary())
        self.unit = dataset.unit

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
        who = "guard" if part < 0 else f"part {part}"
        self._update("fine-tune", completed=stats.epoch,
                     info=f"{who} val MAE {stats.val_mae:.4g} {self.unit}"
                          f"{'*' if improved else ''}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
