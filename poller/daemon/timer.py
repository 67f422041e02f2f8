"""The worker's clock: visibility extensions, handler timeouts and stuck handlers.

The `timer` thread only looks at the clock and hands work on; it never makes a call that could
wait. Extensions that are due go to the `extend` thread (ChangeMessageVisibilityBatch, ten a
request), so one slow call delays no timeout; a message that runs past handler.timeout is
claimed here and its settlement handed to the housekeeper (`on_timeout`), while its slot stays
taken until the handler call returns (`Held.overdue`). A call still running `stuck_after`
seconds past its deadline is reported once (`on_stuck`): its thread will never be free again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from poller.daemon.heartbeat import IDLE_TICK, Heartbeat
from poller.daemon.inflight import Held, InFlight, Running
from poller.daemon.loops import survive


class Timer:
    def __init__(
        self,
        heartbeats: Mapping[str, Heartbeat],
        held: Held,
        running: Running,
        *,
        on_timeout: Callable[[InFlight], None],
        on_stuck: Callable[[InFlight], None],
        stuck_after: float,
        log: Any,
        count_error: Callable[[str], None],
    ):
        self.heartbeats = heartbeats  # by queue URL: each queue's visibility timeout and client
        self.held = held
        self.running = running
        self.on_timeout = on_timeout
        self.on_stuck = on_stuck
        self.stuck_after = stuck_after
        self.log = log
        self.count_error = count_error
        self._wake = threading.Event()
        self._stopping = False
        self._extensions: queue.SimpleQueue[tuple[Heartbeat, list[InFlight]] | None] = queue.SimpleQueue()
        # Groups handed to the extend thread and not yet done: the timer adds only when it is 0,
        # the extend thread subtracts only while it is not, so the two never write at once.
        self._extending = 0
        self._stuck_reported = False
        self.threads = [
            threading.Thread(target=self._run, name="timer", daemon=True),
            threading.Thread(target=self._extend, name="extend", daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._extensions.put(None)
        for thread in self.threads:
            thread.join(timeout=5)

    def wake(self) -> None:
        self._wake.set()

    # --- the timer thread: the clock, nothing else ------------------------------------------------

    def _run(self) -> None:
        wake = time.monotonic()
        while not self._stopping:
            self._wake.wait(max(0.0, wake - time.monotonic()))
            self._wake.clear()
            wake = survive(self.tick, self.log, self.count_error) or time.monotonic() + IDLE_TICK

    def tick(self) -> float:
        """Time out what ran too long, report what is stuck, hand on the extensions due.
        Returns when to look next."""
        now = time.monotonic()
        wake = now + IDLE_TICK
        self.held.count()
        for entry in self.running.snapshot():
            if now < entry.deadline:
                wake = min(wake, entry.deadline)
            elif entry.claim():  # nobody settled it: it timed out just now
                entry.timed_out = True
                with self.held.changed:
                    self.held.overdue += 1  # its thread is still busy
                self.on_timeout(entry)
                wake = min(wake, entry.deadline + self.stuck_after)
            elif now >= entry.deadline + self.stuck_after:
                if not self._stuck_reported:
                    self._stuck_reported = True
                    self.on_stuck(entry)
            else:
                wake = min(wake, entry.deadline + self.stuck_after)
        if self._extending:  # the last extensions are not back: look again soon
            return min(wake, now + 0.1)
        by_queue: dict[str, list[InFlight]] = {}
        for entry in self.held.snapshot():
            by_queue.setdefault(entry.message.queue_url, []).append(entry)
        calls = []
        for url, entries in by_queue.items():
            heartbeat = self.heartbeats[url]
            groups, due = heartbeat.due(entries)
            wake = min(wake, due)
            calls += [(heartbeat, group) for group in groups]
        self._extending += len(calls)
        for call in calls:
            self._extensions.put(call)
        return wake

    # --- the extend thread: the calls --------------------------------------------------------

    def _extend(self) -> None:
        while (call := self._extensions.get()) is not None:
            heartbeat, group = call
            survive(lambda h=heartbeat, g=group: h.extend_group(g), self.log, self.count_error)
            self._extending -= 1
            if not self._extending:
                self._wake.set()  # the timer plans the next beat from the new visibility
