"""The live status view of `sqs-poller top` and the demo: the daemon's status, redrawn every
second with rich; `q` quits. Keys are read in cbreak mode, and the terminal is restored however
the view ends."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

from poller.output import status_view

REFRESH = 1.0


@contextlib.contextmanager
def cbreak(stream: Any) -> Iterator[int | None]:
    """The stream's descriptor in cbreak mode (keys one at a time, no echo), restored on exit;
    None when it is not a terminal (then no key is read)."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        fd = -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def wait_for_quit(fd: int | None, seconds: float) -> bool:
    """Wait up to `seconds` for `q` (or Q, or Ctrl-D/EOF) on `fd`; True when it came."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if fd is None:
            time.sleep(left)
            return False
        if not select.select([fd], [], [], left)[0]:
            return False
        keys = os.read(fd, 64)
        if not keys or b"q" in keys.lower() or b"\x04" in keys:
            return True
    return False


def live_status(
    fetch: Callable[[], dict[str, Any]],
    done: Callable[[], bool] = lambda: False,
    keys: bool = True,
    note: str = "q quits",
    refresh: float = REFRESH,
    console: Any = None,
) -> None:
    """Show `fetch()`'s status until `q` (with `keys`) or `done()`, on `console` (a rich Console;
    default: stdout's). A failed fetch shows why and tries again next second."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    def view() -> Any:
        try:
            return status_view(fetch(), note)
        except Exception as exc:  # the daemon went away or is restarting: say so, keep looking
            return Text(f"no answer from the daemon: {exc}", style="bold red")

    console = console or Console()
    with cbreak(sys.stdin if keys else None) as fd, Live(view(), console=console, auto_refresh=False) as live:
        while not done():
            if wait_for_quit(fd, refresh):
                return
            live.update(view(), refresh=True)
