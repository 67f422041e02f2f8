"""Background loops that survive: an unexpected exception in one turn is logged and counted,
and the loop goes on. A loop that ends anyway (its thread died) is noticed by the worker's
main loop (`dead_threads`), which has the worker replaced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

ERROR_PAUSE = 0.1  # seconds after a failed turn: a turn that always fails must not spin


def survive(turn: Callable[[], Any], log: Any, count: Callable[[str], None]) -> Any:
    """Run one turn of a loop; on an exception, log it with the thread's name, count it, return
    None."""
    try:
        return turn()
    except Exception as exc:
        name = threading.current_thread().name
        log.exception("loop_failed", thread=name, error=f"{type(exc).__name__}: {exc}"[:500])
        count(name.rstrip("0123456789").rstrip("-"))
        time.sleep(ERROR_PAUSE)
        return None


def dead_threads(threads: Iterable[threading.Thread]) -> list[str]:
    """Names of started threads that are no longer alive."""
    return [t.name for t in threads if t.ident is not None and not t.is_alive()]
