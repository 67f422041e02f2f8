"""Human output: rich tables on a terminal, JSON lines otherwise (for scripts and CI logs)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def is_terminal() -> bool:
    return sys.stdout.isatty()


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on a terminal; otherwise one JSON object a row, keyed by column."""
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        Console().print(table)
        return
    for row in rows:
        emit_json({"table": title, **dict(zip(columns, row, strict=True))})


def emit_json(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def emit_note(text: str) -> None:
    if is_terminal():
        from rich.console import Console

        Console().print(text)
    else:
        emit_json({"note": text})


def emit_result(text: str, record: dict[str, Any]) -> None:
    """What a command did: a sentence on a terminal, else one JSON object."""
    if is_terminal():
        from rich.console import Console

        Console().print(text)
    else:
        emit_json(record)


# --- the daemon's status (`sqs-poller status`, `top`, the demo's live view) -----------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def queue_state(queue: dict[str, Any]) -> str:
    if queue.get("quiet"):
        return "quiet"
    if queue.get("paused"):
        until = queue.get("paused_until")
        return f"paused until {until}" if until else "paused"
    return "receiving"


def status_view(status: dict[str, Any], note: str = "") -> Any:
    """A rich renderable of a `status` reply: the host, a table of queues, one of workers."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header = Text.assemble(
        ("sqs-poller ", "bold"),
        f"on {status.get('host', '?')}  supervisor pid {status.get('pid', '?')}  ",
        f"up {_age(status.get('uptime_seconds'))}  ",
        (status.get("status", ""), "yellow" if "paused" in status.get("status", "") else "green"),
    )
    queues = Table(title="queues", title_justify="left", expand=False)
    for column in ("queue", "state", "breaker", "received/s", "handled/s", "in flight", "oldest running"):
        queues.add_column(column, justify="left" if column in ("queue", "state", "breaker") else "right")
    for column, texts in ((0, [q["name"] for q in status.get("queues", [])]), (1, ["receiving"])):
        queues.columns[column].min_width = max(map(len, texts), default=5)  # never cut
    for q in status.get("queues", []):
        state = queue_state(q)
        queues.add_row(
            q["name"],
            Text(state, style="green" if state == "receiving" else "bold yellow"),
            Text(q.get("breaker", "?"), style="green" if q.get("breaker") == "closed" else "bold red"),
            f"{q.get('received_per_second', 0):.1f}",
            f"{q.get('handled_per_second', 0):.1f}",
            str(q.get("in_flight", 0)),
            _age(q.get("oldest_running_seconds")),
        )
    workers = Table(title="workers", title_justify="left", expand=False)
    for column in ("#", "pid", "in flight", "RSS MB", "uptime", "handled", "oldest running"):
        workers.add_column(column, justify="right")
    for w in status.get("workers", []):
        workers.add_row(
            str(w["index"]),
            str(w["pid"]),
            str(w.get("in_flight", 0)),
            f"{w.get('rss_mb', 0):.0f}",
            _age(w.get("uptime_seconds")),
            str(w.get("handled", 0)),
            _age(w.get("oldest_running_seconds")),
        )
    parts: list[Any] = [header, queues, workers]
    if note:
        parts.append(Text(note, style="dim"))
    return Group(*parts)
