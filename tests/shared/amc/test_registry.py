"""The registry of strategies, merges and heads: complete, self-describing, the CLI's source."""

from __future__ import annotations

import click
import pytest
import typer

from moma.amc.registry import (
    HEADS,
    KNN_LAYERS,
    get_head,
    get_merge,
    get_strategy,
    merges,
    strategies,
)
from moma.errors import MomaError
from moma_client.cli.app import app


def test_every_documented_strategy_and_merge_is_registered_once() -> None:
    assert list(strategies()) == ["amc", "select-average", "all-average", "random",
                                  "backbone-ft", "scratch"]
    assert list(merges()) == ["auto", "average", "top1", "ensemble"]
    assert list(HEADS) == ["fresh", "inherit"]


@pytest.mark.parametrize("item", [*strategies().values(), *merges().values(), *HEADS.values()],
                         ids=lambda item: item.name)
def test_each_entry_declares_a_one_line_description(item: object) -> None:
    description = item.description  # type: ignore[attr-defined]
    assert description and "\n" not in description and len(description) < 90


def test_needs_are_declared_where_they_matter() -> None:
    table = strategies()
    assert not table["backbone-ft"].needs_modules and table["backbone-ft"].needs_base
    assert not table["scratch"].needs_modules and table["scratch"].kinds == ("full",)
    assert all(table[name].needs_modules for name in ("amc", "select-average", "all-average",
                                                      "random"))
    assert {"k", "threshold", "knn_layer", "solver"} <= set(table["amc"].parameters)
    assert table["all-average"].parameters == ()
    assert merges()["average"].needs_shared_base and not merges()["top1"].needs_shared_base
    assert merges()["auto"].resolve is not None and merges()["auto"].start is None
    assert all(merges()[m].start is not None for m in ("average", "top1", "ensemble"))


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(MomaError, match="unknown strategy 'amx'; choose one of: amc, "):
        get_strategy("amx")
    with pytest.raises(MomaError, match=r"unknown merge 'mean'.*ensemble"):
        get_merge("mean")
    with pytest.raises(MomaError, match="unknown head"):
        get_head("old")


def test_the_cli_choices_come_from_the_registry() -> None:
    compose = typer.main.get_command(app).commands["compose"]  # type: ignore[attr-defined]
    choices = {p.name: list(p.type.choices) for p in compose.params
               if isinstance(p.type, click.Choice)}
    assert choices["strategy"] == list(strategies())
    assert choices["merge"] == list(merges())
    assert choices["head"] == list(HEADS)
    assert choices["knn_layer"] == list(KNN_LAYERS)
    help_text = {p.name: p.help for p in compose.params}
    for name, strategy in strategies().items():
        assert f"{name}: {strategy.description}" in str(help_text["strategy"])
