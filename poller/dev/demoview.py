"""What the demo shows while its traffic runs: the daemon's live status (`sqs-poller top`'s
view) on a terminal, a progress line every few seconds otherwise; the daemon's own logs go to
a file the demo names at the end."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from poller.daemon.controlsocket import ControlError, request

PROGRESS_EVERY = 2.0


@contextlib.contextmanager
def logs_to_file(path: str) -> Iterator[IO[str]]:
    """This process's stdout and stderr, and so the workers' it starts, go to `path` meanwhile;
    yields a stream on the terminal's (or the caller's) stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    screen = os.fdopen(os.dup(saved_out), "w", buffering=1)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield screen
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        screen.close()


class DemoView:
    """A thread showing the daemon listening on `socket_path` until `stop()`."""

    def __init__(self, socket_path: str, screen: IO[str], live: bool, note: str):
        self.path = socket_path
        self.screen = screen
        self.live = live  # on a terminal: the live view; else progress lines
        self.note = note
        self.last: dict[str, Any] = {}
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-view", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._done.set()
        self.thread.join(timeout=5)

    def fetch(self) -> dict[str, Any]:
        """The daemon's status; once it has stopped listening (the demo is ending), the last."""
        try:
            self.last = request(self.path, {"command": "status"}, timeout=2.0)
        except ControlError:
            if not self.last:
                raise
        return self.last

    def _run(self) -> None:
        deadline = time.monotonic() + 30
        while not os.path.exists(self.path) and time.monotonic() < deadline and not self._done.is_set():
            time.sleep(0.1)  # the supervisor is starting
        if self.live:
            from rich.console import Console

            from poller.liveview import live_status

            console = Console(file=self.screen, force_terminal=True)
            live_status(self.fetch, self._done.is_set, keys=False, note=self.note, console=console)
            return
        while not self._done.wait(PROGRESS_EVERY):
            self.screen.write(json.dumps(self.progress()) + "\n")

    def progress(self) -> dict[str, Any]:
        try:
            status = self.fetch()
        except ControlError as exc:
            return {"demo": "progress", "error": str(exc)}
        queues = status.get("queues", [])
        return {
            "demo": "progress",
            "received": sum(q["received"] for q in queues),
            "handled": sum(q["handled"] for q in queues),
            "handled_per_second": sum(q["handled_per_second"] for q in queues),
            "in_flight": sum(q["in_flight"] for q in queues),
            "breaker": ",".join(sorted({q["breaker"] for q in queues})),
            "workers": len(status.get("workers", [])),
        }
