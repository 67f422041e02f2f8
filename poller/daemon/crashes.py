"""Crash attribution: which message kills its worker process (SIGKILL, a segfault, os._exit).

A worker keeps a record of the messages it is running (`RunningRecord`, a file in the run
directory rewritten as they change). When a worker that had booted dies, the supervisor marks
each message that record names (`record_crash`). On its next receive on this host a marked
message runs alone in its worker (`Isolation`), so a crash then is its own; a message marked
twice is dead-lettered without running ("crashed its worker (signal SIGKILL) twice"). Receive
counts alone cannot do this: a message released unstarted by a stop or reload is received
again too, and only what the dead worker held says who was there.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable, Iterable

from poller.daemon.inflight import Held, InFlight
from poller.daemon.marks import folder_has_files
from poller.daemon.rundir import run_dir

TIMES = {1: "once", 2: "twice"}


def _safe(message_id: str) -> str:
    return re.sub(r"[^\w.-]", "_", message_id)


def _running_path(root: str, pid: int) -> str:
    return os.path.join(root, "running", str(pid))


def _crash_path(root: str, message_id: str) -> str:
    return os.path.join(root, "marks", "crashed", _safe(message_id))


class RunningRecord:
    """What this worker process is running, for the supervisor to read should it die: a file in
    the run directory written through a shared mapping. A write is a copy into the page cache
    the supervisor's read sees (a killed process's too), not a system call, so the thread that
    writes keeps the interpreter lock instead of handing it to every waiting thread and
    queueing to get it back."""

    def __init__(self, root: str | None = None, size: int = 8192):
        self.path = _running_path(root or run_dir(), os.getpid())
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._map: mmap.mmap | None = None
        self._resize(size)
        self._used = 0  # bytes the last record took: a shorter one blanks the rest with newlines

    def _resize(self, size: int) -> None:
        old = len(self._map) if self._map is not None else 0
        os.ftruncate(self._fd, size)
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, size)
        self._map[old:size] = b"\n" * (size - old)  # the reader skips blank lines

    def write(self, message_ids: Iterable[str]) -> None:
        data = "\n".join(message_ids).encode()
        assert self._map is not None
        if len(data) >= len(self._map):
            self._resize(2 * len(data))
        self._map[: max(self._used, len(data))] = data + b"\n" * (self._used - len(data))
        self._used = len(data)

    def close(self) -> None:
        """A clean exit: nothing to attribute."""
        if self._map is not None:
            self._map.close()
        os.close(self._fd)
        os.unlink(self.path)


def record_crash(pid: int, how: str, root: str | None = None) -> list[str]:
    """Supervisor: mark every message the dead worker `pid` was running; returns their ids."""
    root = root or run_dir()
    path = _running_path(root, pid)
    try:
        with open(path, encoding="utf-8") as fh:
            ids = [line for line in fh.read().splitlines() if line]
        os.unlink(path)
    except OSError:
        return []
    for message_id in ids:
        mark = _crash_path(root, message_id)
        os.makedirs(os.path.dirname(mark), exist_ok=True)
        with open(mark, "a", encoding="utf-8") as fh:
            fh.write(f"{how}\t{'alone' if len(ids) == 1 else len(ids)}\n")
    return ids


def crashes(message_id: str, root: str | None = None) -> list[str]:
    """How each crash this message was present at ended its worker ("signal SIGKILL", ...)."""
    try:
        with open(_crash_path(root or run_dir(), message_id), encoding="utf-8") as fh:
            return [line.split("\t")[0] for line in fh.read().splitlines() if line]
    except OSError:
        return []


def any_crashes(root: str | None = None) -> bool:
    """Was any message present at a crash? One look, so a batch without suspects costs no
    `crashes` call a message."""
    return folder_has_files(os.path.dirname(_crash_path(root or run_dir(), "x")))


def crash_reason(hows: list[str]) -> str:
    return f"crashed its worker ({hows[-1]}) {TIMES.get(len(hows), f'{len(hows)} times')}"


class Isolation:
    """Suspects of a crash wait here, held (and kept hidden), and run one at a time while
    nothing else runs in this worker; meanwhile this worker receives nothing."""

    def __init__(
        self,
        held: Held,
        submit: Callable[[list[InFlight]], None],
        release: Callable[[list[InFlight]], object],
        record: RunningRecord,
    ):
        self.held = held
        self.submit = submit
        self.release = release
        self.record = record
        self.waiting: list[InFlight] = []

    def add(self, entry: InFlight) -> None:
        with self.held.changed:
            self.waiting.append(entry)
            self.record.write(self.running(self.held.snapshot()))  # a waiting one is not running

    def running(self, entries: Iterable[InFlight]) -> list[str]:
        """Ids of the held entries that may be running (not those waiting here)."""
        if not self.waiting:  # the usual case, on every receive
            return [e.message.message_id for e in entries]
        return [e.message.message_id for e in entries if not any(e is w for w in self.waiting)]

    def run_next(self, stopping: Callable[[], bool], beat: Callable[[], None]) -> None:
        """Wait until only the suspects are held, run the first alone, wait until it is done.
        On a stop, the waiting ones go back untouched."""
        self._wait_alone(stopping, beat)
        with self.held.changed:
            entry = None if stopping() else self.waiting.pop(0)
            if entry is not None:
                self.record.write([entry.message.message_id])
        if entry is not None:
            self.submit([entry])
            self._wait_alone(stopping, beat)
        if stopping():
            self.release_waiting()

    def release_waiting(self) -> None:
        with self.held.changed:
            waiting, self.waiting = self.waiting, []
        self.release(waiting)

    def _wait_alone(self, stopping: Callable[[], bool], beat: Callable[[], None]) -> None:
        with self.held.changed:
            while len(self.held) > len(self.waiting) and not stopping():
                self.held.changed.wait(0.2)
                beat()
