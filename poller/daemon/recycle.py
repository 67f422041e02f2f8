"""Replacing a worker that has done enough (`[workers] max_messages`) or grown too big
(`max_memory_mb`), as gunicorn's max_requests and Celery's max_memory_per_child do.

Near a limit the worker asks the supervisor for a successor (a file in the run directory), so
the successor is polling by the time the worker stops receiving; past it, the worker finishes
what it holds, releases nothing, and exits.
"""

from __future__ import annotations

import os
import signal

from poller.daemon.rundir import run_dir, supervisor_pid

NEAR_MEMORY = 0.9  # ask for a successor at this share of max_memory_mb


def rss_mb() -> float:
    """This process's resident memory now (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
    except (OSError, ValueError, IndexError):
        return 0.0


def successor_path(pid: int, root: str | None = None) -> str:
    return os.path.join(root or run_dir(), "successor", str(pid))


def request_successor(reason: str) -> None:
    """Ask the supervisor to start this worker's successor now (a file in the run directory
    saying why, and SIGUSR2 to wake it); this worker then finishes what it holds and exits."""
    path = successor_path(os.getpid())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(reason)
    if (supervisor := supervisor_pid()) is not None:
        os.kill(supervisor, signal.SIGUSR2)  # wakes the supervisor: it starts the successor


def take_successor_request(pid: int, root: str) -> str:
    """Supervisor: why worker `pid` asked for a successor ("" if it did not); the ask is used up."""
    path = successor_path(pid, root)
    try:
        with open(path, encoding="utf-8") as fh:
            why = fh.read().strip() or "recycled"
        os.unlink(path)
    except FileNotFoundError:
        return ""
    return why


class Recycle:
    def __init__(self, max_messages: int, max_memory_mb: int, batch: int):
        self.max_messages = max_messages
        self.max_memory_mb = max_memory_mb
        self.batch = batch
        self.received = 0
        self.asked = False

    @property
    def enabled(self) -> bool:
        return bool(self.max_messages or self.max_memory_mb)

    def cap(self, free: int) -> int:
        """At most this many to receive: never past max_messages."""
        return min(free, self.max_messages - self.received) if self.max_messages else free

    def due(self) -> str:
        """Why this worker must stop receiving now ("" if it need not); asks for a successor
        once it comes near a limit."""
        rss = rss_mb() if self.max_memory_mb else 0.0
        if not self.asked and (
            (
                self.max_messages
                and self.received >= self.max_messages - min(self.batch, self.max_messages // 2)
            )
            or (self.max_memory_mb and rss >= NEAR_MEMORY * self.max_memory_mb)
        ):
            request_successor("recycled")
            self.asked = True
        if self.max_messages and self.received >= self.max_messages:
            return f"max_messages {self.max_messages} reached"
        if self.max_memory_mb and rss >= self.max_memory_mb:
            return f"memory {rss:.0f} MB past max_memory_mb {self.max_memory_mb}"
        return ""
