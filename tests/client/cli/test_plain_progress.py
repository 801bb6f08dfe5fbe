"""Progress for logs: periodic plain lines, one at completion, none of rich's bar drawing."""

from __future__ import annotations

import io

from rich.console import Console

from moma_client.cli.plain_progress import PlainProgress


def test_lines_are_periodic_and_completion_is_always_printed() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    with PlainProgress(console, interval=3600) as bar:
        task = bar.add_task("fine-tune", total=5, info="")
        for epoch in range(1, 6):
            bar.update(task, completed=epoch, info=f"val MAE {0.5 / epoch:.3f} eV")
        other = bar.add_task("graphs", total=10, info="")
        bar.update(other, completed=4)
    lines = buffer.getvalue().splitlines()
    # the first update prints (nothing printed yet), then only completion: 2 lines for the
    # fine-tune task; the unfinished graphs task prints on its first update and at exit
    assert lines[0].startswith("fine-tune 1/5 val MAE 0.500 eV")
    assert lines[1].startswith("fine-tune 5/5 val MAE 0.100 eV")
    assert [line.split(" (")[0] for line in lines[2:]] == ["graphs 4/10", "graphs 4/10"]
    assert "\x1b" not in buffer.getvalue()
