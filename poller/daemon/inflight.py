"""The messages a worker holds, from receive until settled: `InFlight` entries in a `Held` set,
and the handler calls still running (`Running`), which may outlive their message's settlement.

Both the handler threads and the timer look at an entry; `claim()` decides which of them
settles it, exactly once, and `begin()` starts it only if nobody has settled it yet.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from poller.message import Message


@dataclass(eq=False, slots=True)
class InFlight:
    """A message this worker holds, from receive until it is settled."""

    message: Message
    visible_until: float  # monotonic time SQS will make it visible again
    started: float = 0.0
    deadline: float = 0.0
    settled: bool = False  # claimed by whoever settles it; no more visibility extensions
    timed_out: bool = False  # the timer settled it while its handler call still ran
    delay: int = 0  # when retried: seconds until it is visible again
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, timeout: float) -> bool:
        """Start the handler's clock, unless the message is settled already (released at a
        stop, say): a message whose fate is decided never runs."""
        with self.lock:
            if self.settled:
                return False
            self.started = time.monotonic()
            self.deadline = self.started + timeout
            return True

    def claim(self) -> bool:
        """The right to settle; exactly one of handler thread, housekeeper or release gets it."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class Held:
    """The entries of one worker, keyed by receipt handle, with a condition to wait for a slot.

    A forget wakes the waiting receive loop only once few enough are held (`wake_at`, which the
    loop sets to what a worthwhile receive needs) or none: not once per finished message.
    """

    def __init__(self, on_count: object = None):
        self._entries: dict[str, InFlight] = {}
        self._per_queue: dict[str, int] = {}  # entries held, by queue URL
        self.changed = threading.Condition(threading.RLock())  # a signal handler may wake it
        self._on_count = on_count  # called with the new count (the in-flight gauge)
        self.wake_at = 1 << 30  # notify when at most this many are held
        self.overdue = 0  # timed-out calls still running (the timer adds, their return removes)
        self._reported = -1  # the count last reported (none yet)

    def __len__(self) -> int:
        return len(self._entries)

    def busy(self) -> int:
        """Slots in use: what is held, and what timed out but whose handler call still runs
        (its thread is not free, so its slot is not either)."""
        return len(self._entries) + self.overdue

    def overdue_returned(self) -> None:
        """A handler call that timed out has returned at last: its slot is free."""
        with self.changed:
            self.overdue -= 1
            self.changed.notify_all()

    def count_of(self, queue_url: str) -> int:
        return self._per_queue.get(queue_url, 0)

    def add(self, entries: list[InFlight]) -> None:
        with self.changed:
            for entry in entries:
                self._entries[entry.message.receipt_handle] = entry
                url = entry.message.queue_url
                self._per_queue[url] = self._per_queue.get(url, 0) + 1
            self._count()

    def forget(self, entry: InFlight) -> None:
        with self.changed:
            if self._entries.pop(entry.message.receipt_handle, None) is not None:
                self._per_queue[entry.message.queue_url] -= 1
            left = len(self._entries)
            if left <= self.wake_at or not left:
                self.changed.notify_all()
                if not left:
                    self._count()

    def count(self) -> None:
        """Report the number held (the housekeeper calls it each tick), if it changed since the
        last report: only forgets go unreported, and each of them lowers the count."""
        if len(self._entries) != self._reported:
            self._count()

    def snapshot(self) -> list[InFlight]:
        with self.changed:
            return list(self._entries.values())

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _count(self) -> None:
        self._reported = len(self._entries)
        if self._on_count is not None:
            self._on_count(self._reported)  # type: ignore[operator]


class Running:
    """The handler calls running now, from start until the call returns, whatever happened to
    their messages meanwhile: the timer finds timeouts and stuck handlers here."""

    def __init__(self) -> None:
        self._calls: dict[int, InFlight] = {}

    def add(self, entry: InFlight) -> None:
        self._calls[id(entry)] = entry

    def remove(self, entry: InFlight) -> None:
        self._calls.pop(id(entry), None)

    def snapshot(self) -> list[InFlight]:
        return list(self._calls.copy().values())  # (dict.copy is atomic: no lock on the hot path)

    def __len__(self) -> int:
        return len(self._calls)
