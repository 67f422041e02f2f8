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
