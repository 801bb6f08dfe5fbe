"""What every command shares: consoles, error handling, JSON output and progress displays."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from moma.safe_text import json_text
from moma_client.cli.plain_progress import PlainProgress

# Results go to stdout (plain or --json); progress and errors to stderr, so that
# `moma-client ... --json | jq` always sees clean JSON.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(payload: Any) -> None:
    sys.stdout.write(json_text(payload) + "\n")
    sys.stdout.flush()


def progress() -> Progress | PlainProgress:
    """A live bar on a terminal; plain periodic lines when progress goes to a file or pipe."""
    if not err.is_terminal:
        return PlainProgress(err)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@contextmanager
def step(description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar for one stage; yields an ``update(done, total)`` callback."""
    with progress() as bar:
        task = bar.add_task(description, total=total, info="")

        def update(done: int, new_total: int) -> None:
            bar.update(task, completed=done, total=new_total)

        yield update
