"""Option groups the commands share (data, training), declared once.

``train``, ``contribute``, ``compose`` and ``federate`` read data and train with the same flags;
each flag's name, type, checks and help live here, and each command gives only its default.
Choices come from the registries (backbones, module kinds), so they cannot drift.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer

from moma.amc.registry import KINDS, help_text
from moma.backbones.registry import backbone_names

# -- data ----------------------------------------------------------------------------------------
Data = Annotated[str, typer.Option("--data", help="Dataset: a shared-format JSON file, a CIF folder with id_prop.csv, an extxyz file, or matminer:NAME.")]
Task = Annotated[str | None, typer.Option("--task", help="Task name (default: the dataset's).")]
Target = Annotated[str | None, typer.Option("--target", help="Target column for multi-target data.")]
Split = Annotated[str, typer.Option("--split", help="Published split (seed0..seed4) or 'random'.")]
SkipInvalid = Annotated[bool, typer.Option("--skip-invalid", help="Drop invalid records (listed) instead of failing.")]

# -- model ---------------------------------------------------------------------------------------
Backbone = Annotated[str, typer.Option("--backbone", click_type=click.Choice(backbone_names()), metavar="NAME", help="The backbone network: " + ", ".join(backbone_names()) + ".")]
Kind = Annotated[str, typer.Option("--kind", click_type=click.Choice(list(KINDS)), metavar="KIND", help="Module kind: " + help_text(KINDS) + ".")]
Init = Annotated[Path | None, typer.Option("--init", help="Start from this full module (folder) instead of the backbone's pretrained weights.")]

# -- training ------------------------------------------------------------------------------------
Epochs = Annotated[int, typer.Option("--epochs", min=1, help="Most epochs (early stopping on the validation MAE).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=2, help="Structures per batch.")]
Lr = Annotated[float, typer.Option("--lr", help="Learning rate (Adam).")]
HeadLrFactor = Annotated[float, typer.Option("--head-lr-factor", help="Head learning rate / backbone's.")]
Patience = Annotated[int, typer.Option("--patience", help="Early stopping patience (epochs).")]
Loss = Annotated[str, typer.Option("--loss", click_type=click.Choice(["l1", "mse", "huber"]), metavar="LOSS", help="Loss on standardized targets: l1, mse or huber.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of splits, subsamples and initialization.")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
MaxTrain = Annotated[int | None, typer.Option("--max-train", help="Use at most N training records (seeded subsample).")]
Name = Annotated[str | None, typer.Option("--name", help="Module name for the card.")]
Out = Annotated[Path, typer.Option("--out", help="Output folder.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

# -- trust: units, ranges, intervals ---------------------------------------------------------
Unit = Annotated[str | None, typer.Option("--unit", help="Unit of the target (default: the data's, else the --init module's).")]
Property = Annotated[str | None, typer.Option("--property", help="Property name for the card (default: the data's target).")]
Coverage = Annotated[float, typer.Option("--coverage", help="Coverage of the prediction intervals (split conformal on validation).")]
ValueRange = Annotated[str | None, typer.Option("--range", help="Physical range LOW:HIGH of the property (known tasks declare theirs), e.g. 0:")]
RangePolicy = Annotated[str, typer.Option("--range-policy", click_type=click.Choice(["clip", "flag"]), metavar="POLICY", help="Predictions outside the range: clip or flag.")]
PublishDataFingerprint = Annotated[bool, typer.Option("--publish-data-fingerprint", help="Put a salted fingerprint of the training structures on the card, so downstream owners can check overlap with their test data (docs/hub.md says what it reveals).")]

F = TypeVar("F", bound=Callable[..., Any])

TRAINING = ("task", "target", "backbone", "kind", "init", "split", "epochs", "batch_size", "lr",
            "head_lr_factor", "patience", "loss", "seed", "device", "skip_invalid", "max_train",
            "name", "unit", "prop", "publish_data_fingerprint")
"""The options of ``moma-client train`` that ``contribute --data`` passes on unchanged."""


def with_options_of(source: Callable[..., Any], names: Sequence[str]) -> Callable[[F], F]:
    """Give a command the options ``names`` of command ``source`` (same flags, checks, help and
    defaults, declared once there); they reach the command in its ``**kwargs``."""

    def wrap(func: F) -> F:
        own = inspect.signature(func, eval_str=True)
        params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        theirs = inspect.signature(source, eval_str=True).parameters
        setattr(func, "__signature__",  # noqa: B010 - typer reads the signature
                own.replace(parameters=[*params, *(theirs[name] for name in names)]))
        return func

    return wrap
