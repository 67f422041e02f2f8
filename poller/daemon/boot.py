"""The first code a spawned worker process runs: kept free of imports so that the worker
loads only what its config uses (the supervisor imports this module, not the worker's)."""

from __future__ import annotations

import sys
from typing import Any


def skip_rich(log_format: str) -> None:
    """Before structlog is imported: structlog imports rich (~6 MB) when it can, and a process
    that logs JSON never renders to a terminal."""
    if log_format == "json":
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]


def start_worker(config: Any, index: int, beat: Any) -> None:
    """multiprocessing target: a worker process's entry point."""
    skip_rich(config.logging.format)
    from poller.daemon.worker import run_worker

    run_worker(config, index, beat)
