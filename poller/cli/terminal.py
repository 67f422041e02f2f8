"""Terminal behaviour of the long-running operator commands: asking before acting, stopping
gracefully on Ctrl-C, progress and summaries (rich on a terminal, JSON lines otherwise)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, refuse unless --yes."""
    if yes:
        return
    if not interactive():
        raise click.UsageError(f"{question} Refusing without a terminal: pass --yes.")
    if not click.confirm(question, default=False):
        raise click.exceptions.Abort()


@contextmanager
def graceful_stop() -> Iterator[Callable[[], bool]]:
    """First SIGINT/SIGTERM: stop after the current batch. A second SIGINT interrupts at once
    (still safe: nothing is deleted before it is elsewhere)."""
    received: list[int] = []

    def record(signum: int, frame: Any) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Progress:
    """A rich progress bar (counts, ETA) on a terminal; a JSON line a second otherwise."""

    def __init__(self, label: str, total: int | None):
        self.label = label
        self.total = total
        self.last = 0.0
        self.fields: dict[str, Any] = {}
        self.bar: Any = None

    def __enter__(self) -> Progress:
        from poller.output import is_terminal

        if is_terminal():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, counts="")
        return self

    def update(self, done: int, total: int | None = None, **counts: Any) -> None:
        if total is not None:
            self.total = total
        self.fields = {"done": done, "total": self.total, **counts}
        if self.bar is not None:
            text = " ".join(f"{k} {v}" for k, v in counts.items() if v or k != "would_replay")
            self.bar.update(self.task, completed=done, total=self.total, counts=text)
            return
        now = time.monotonic()
        if now - self.last >= 1:
            self.last = now
            from poller.output import emit_json

            emit_json({"event": "progress", "command": self.label, **self.fields})

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def show_summary(title: str, report: dict[str, Any]) -> None:
    from poller.output import emit_table

    emit_table(title, ["", "value"], [[k, v] for k, v in report.items()])
