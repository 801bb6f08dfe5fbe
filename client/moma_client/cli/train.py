"""``moma-client train``: train a full or adapter module on a dataset and save it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from moma.arguments import check_train_arguments
from moma.safe_text import for_markup
from moma_client.cli import options as o
from moma_client.cli.common import err, out, print_json, progress
from moma_client.cli.trust_output import print_train_result

if TYPE_CHECKING:
    from moma.data.prepared import PreparedData
    from moma.data.records import Dataset
    from moma.training.loop import EpochStats


def train(
    data: o.Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for module.safetensors and card.json.")],
    task: o.Task = None,
    target: o.Target = None,
    backbone: o.Backbone = "cgcnn",
    kind: o.Kind = "full",
    init: o.Init = None,
    split: o.Split = "seed0",
    epochs: o.Epochs = 100,
    batch_size: o.BatchSize = 32,
    lr: o.Lr = 1e-3,
    head_lr_factor: o.HeadLrFactor = 1.0,
    patience: o.Patience = 20,
    loss: o.Loss = "l1",
    seed: o.Seed = 0,
    device: o.Device = "cpu",
    skip_invalid: o.SkipInvalid = False,
    max_train: o.MaxTrain = None,
    name: o.Name = None,
    unit: o.Unit = None,
    prop: o.Property = None,
    coverage: o.Coverage = 0.9,
    value_range: o.ValueRange = None,
    range_policy: o.RangePolicy = "clip",
    publish_data_fingerprint: o.PublishDataFingerprint = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Train a module; writes OUT/module.safetensors and OUT/card.json (metrics in target units)."""
    check_train_arguments(backbone=backbone, kind=kind, device=device, has_init=init is not None,
                          max_train=max_train)
    from moma.api.train import TrainHooks
    from moma.api.train import train as train_api
    from moma.training.loop import TrainConfig
    from moma.training.run import TrustOptions
    from moma.uncertainty.ranges import parse_range

    trust = TrustOptions(coverage=coverage,
                         physical_range=parse_range(value_range) if value_range else None,
                         range_policy=range_policy,
                         publish_data_fingerprint=publish_data_fingerprint)
    shown = {"unit": ""}
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                         head_lr_factor=head_lr_factor, patience=patience, loss=loss,
                         seed=seed, device=device)
    with progress() as bar:
        feat = bar.add_task("graphs", total=None, info="", visible=False)
        epoch_bar = bar.add_task("epochs", total=epochs, info="", visible=False)

        def on_featurize(done: int, total: int) -> None:
            bar.update(feat, completed=done, total=total, visible=True)

        def on_prepared(prepared: PreparedData) -> None:
            n = len(prepared.dataset)
            bar.update(feat, completed=n, total=n, visible=True,
                       info="cached" if prepared.cache_hit else "")
            bar.update(epoch_bar, visible=True)

        def on_epoch(stats: EpochStats, improved: bool) -> None:
            mark = "*" if improved else " "
            bar.update(epoch_bar, completed=stats.epoch,
                       info=f"loss {stats.train_loss:.4f} val MAE {stats.val_mae:.4g} "
                            f"{shown['unit']}{mark}")

        def on_dataset(dataset: Dataset) -> None:
            err.print(dataset.report.summary())
            shown["unit"] = dataset.unit

        hooks = TrainHooks(on_dataset=on_dataset, on_featurize=on_featurize,
                           on_prepared=on_prepared, on_epoch=on_epoch, on_notice=err.print)
        outcome = train_api(data, out_dir, backbone=backbone, kind=kind, init=init, task=task,
                            target=target, split=split, config=config, max_train=max_train,
                            name=name, skip_invalid=skip_invalid, hooks=hooks, trust=trust,
                            unit=unit, prop=prop)
    card = outcome.card
    if json_output:
        print_json(card.to_json())
        return
    out.print(f"module {for_markup(card.name)} ({card.kind}, {card.backbone}) -> "
              f"{for_markup(out_dir)}")
    out.print(f"  id {card.module_id}")
    print_train_result(card, out_dir)
