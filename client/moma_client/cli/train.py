"""``moma-client train``: train a full or adapter module on a dataset and save it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moma.backbones.registry import get_backbone
from moma.data.readers import load_dataset
from moma.modules.store import load_module
from moma.safe_text import for_markup
from moma.training.loop import EpochStats, TrainConfig
from moma.training.run import prepare, train_module
from moma_client.cli.common import err, out, print_json, progress


def train(
    data: Annotated[str, typer.Option(help="Dataset: a file, a CIF folder with id_prop.csv, or matminer:NAME.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for module.safetensors and card.json.")],
    task: Annotated[str | None, typer.Option(help="Task name (default: the dataset's).")] = None,
    target: Annotated[str | None, typer.Option(help="Target column for multi-target data.")] = None,
    backbone: Annotated[str, typer.Option(help="Backbone: cgcnn or chgnet.")] = "cgcnn",
    kind: Annotated[str, typer.Option(help="Module kind: full or adapter.")] = "full",
    init: Annotated[Path | None, typer.Option(help="Start from this full module (folder).")] = None,
    split: Annotated[str, typer.Option(help="Published split (seed0..seed4) or 'random'.")] = "seed0",
    epochs: Annotated[int, typer.Option(min=1)] = 100,
    batch_size: Annotated[int, typer.Option(min=2)] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate (Adam).")] = 1e-3,
    head_lr_factor: Annotated[float, typer.Option(help="Head learning rate / backbone's.")] = 1.0,
    patience: Annotated[int, typer.Option(help="Early stopping patience (epochs).")] = 20,
    loss: Annotated[str, typer.Option(help="l1 (default), mse or huber, on standardized targets.")] = "l1",
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    skip_invalid: Annotated[bool, typer.Option(help="Drop invalid records (listed) instead of failing.")] = False,
    max_train: Annotated[int | None, typer.Option(help="Use at most N training records (seeded subsample).")] = None,
    name: Annotated[str | None, typer.Option(help="Module name for the card.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Train a module; writes OUT/module.safetensors and OUT/card.json (metrics in target units)."""
    net = get_backbone(backbone)
    dataset = load_dataset(data, task=task, target=target, skip_invalid=skip_invalid)
    init_module = load_module(init) if init is not None else None
    err.print(dataset.report.summary())
    with progress() as bar:
        feat = bar.add_task("graphs", total=len(dataset), info="")
        prepared = prepare(dataset, net, split, seed=seed, skip_invalid=skip_invalid,
                           on_progress=lambda d, t: bar.update(feat, completed=d, total=t))
        bar.update(feat, completed=len(dataset), info="cached" if prepared.cache_hit else "")
        if max_train is not None and max_train < len(prepared.split["train"]):
            import numpy as np

            rng = np.random.default_rng(seed)
            keep = sorted(rng.choice(prepared.split["train"], size=max_train, replace=False).tolist())
            prepared.split = {**prepared.split, "train": keep}
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                             head_lr_factor=head_lr_factor, patience=patience, loss=loss,
                             seed=seed, device=device)
        task_id = bar.add_task("epochs", total=epochs, info="")

        def on_epoch(stats: EpochStats, improved: bool) -> None:
            mark = "*" if improved else " "
            bar.update(task_id, completed=stats.epoch,
                       info=f"loss {stats.train_loss:.4f} val {stats.val_mae:.4f}{mark}")

        outcome = train_module(prepared, net, kind=kind, config=config, out=out_dir,
                               init=init_module, name=name, on_epoch=on_epoch)
    card = outcome.card
    if json_output:
        print_json(card.to_json())
        return
    m = card.metrics
    out.print(f"module {for_markup(card.name)} ({card.kind}, {card.backbone}) -> "
              f"{for_markup(out_dir)}")
    out.print(f"  id {card.module_id}")
    out.print(f"  val MAE {m['val_mae']:.4g} {for_markup(card.unit)}")
    if "test_mae" in m:
        out.print(f"  test MAE {m['test_mae']:.4g} {for_markup(card.unit)} "
                  f"(train-mean predictor {m['test_mae_train_mean']:.4g}, "
                  f"train-median {m['test_mae_train_median']:.4g})")
