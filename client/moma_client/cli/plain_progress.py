"""Progress for logs: plain, periodic lines when the progress stream is not a terminal.

A rich progress bar written to a file or a pipe is only rendered once, when it stops: a log of
a two-hour compose would show nothing until the end. When stderr (where progress goes) is not
a terminal, :func:`moma_client.cli.common.progress` returns this class instead, which prints
one line per task at most every ``MOMA_PROGRESS_SECONDS`` seconds (default 30), plus one when a
task completes, e.g. ``fine-tune 12/60 val MAE 0.124 eV/atom* (41 s)``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import TaskID

from moma.safe_text import for_markup


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    info: str = ""
    started: float = field(default_factory=time.monotonic)
    printed: float = -math.inf
    done_printed: bool = False


class PlainProgress:
    """The subset of ``rich.progress.Progress`` the commands use, as periodic log lines."""

    def __init__(self, console: Console, interval: float | None = None) -> None:
        self.console = console
        env = os.environ.get("MOMA_PROGRESS_SECONDS", "")
        try:
            default = float(env) if env else 30.0
        except ValueError:
            default = 30.0
        self.interval = default if interval is None else interval
        self.tasks: dict[TaskID, _Task] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            for task_id, task in self.tasks.items():
                if not task.done_printed and task.completed:
                    self._print(task_id, final=True)

    def start(self) -> None:
        """Nothing to draw: lines are printed as updates arrive."""

    def stop(self) -> None:
        self.__exit__(None, None, None)

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> TaskID:
        task_id = TaskID(len(self.tasks))
        self.tasks[task_id] = _Task(description, total, info=str(fields.get("info", "")))
        return task_id

    def update(self, task_id: TaskID, *, completed: float | None = None,
               total: float | None = None, advance: float | None = None,
               **fields: Any) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if "info" in fields:
            task.info = str(fields["info"])
        now = time.monotonic()
        finished = task.total is not None and task.completed >= task.total
        if finished and not task.done_printed:
            self._print(task_id, final=True)
        elif now - task.printed >= self.interval and not finished:
            self._print(task_id)

    def _print(self, task_id: TaskID, final: bool = False) -> None:
        task = self.tasks[task_id]
        task.printed = time.monotonic()
        task.done_printed = task.done_printed or final
        total = "" if task.total is None else f"/{task.total:g}"
        info = f" {task.info}" if task.info else ""
        elapsed = task.printed - task.started
        self.console.print(f"{for_markup(task.description)} {task.completed:g}{total}"
                           f"{for_markup(info)} ({elapsed:.0f} s)", highlight=False, soft_wrap=True)
