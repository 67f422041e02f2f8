"""Fast handlers run on the thread that received their batch, one after another, as a plain
receive/handle/delete loop would: no hand-over to handler threads, so no thread wake-ups for
them (the per-message cost a worker adds to the SQS calls is mostly such wake-ups).

Only while handlers are fast: their recent mean run time (`Calls.pace`) under INLINE_PACE. A
batch in line hands what it has not started to the handler threads once it has run for
INLINE_BUDGET, or when the pace turns slow. A handler that blocks in line is noticed by the
main thread, which waits for the batch: the next time its wait wakes (at least every
longpoll.STOP_CHECK) it takes the rest of the batch for the handler threads and goes on
receiving, so a stuck handler holds one slot, as it would on a handler thread.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from poller.daemon.inflight import InFlight

INLINE_PACE = 0.00025  # seconds: handlers faster than this on average run in line
INLINE_BUDGET = 0.005  # seconds a batch runs in line before the rest goes to handler threads
STALLED = 0.5  # seconds one batch in line may run before the main thread takes the rest


class Inline:
    def __init__(
        self,
        calls: Any,
        hand_off: Callable[[list[InFlight]], None],
        release: Callable[[list[InFlight]], object],
        stopping: Callable[[], bool],
        observe: Callable[[list[float]], None],
    ):
        self.calls = calls  # execute.Calls: run_message (adding its run time to a list), pace
        self.observe = observe  # the run times of a batch, once it is done
        self.hand_off = hand_off  # to the handler threads
        self.release = release
        self.stopping = stopping
        self._batch: deque[InFlight] = deque()
        self._started = 0.0  # when the batch in line began; 0 while none runs

    def fast(self) -> bool:
        return self.calls.pace < INLINE_PACE

    def run(self, entries: list[InFlight]) -> None:
        """On the receiving thread: run `entries` one by one while they stay fast."""
        batch = self._batch = deque(entries)
        self._started = started = time.monotonic()
        timings: list[float] = []
        try:
            while batch:
                if self.stopping():  # as a handler thread would: what has not started goes back
                    self.release(_take_all(batch))
                    return
                if time.monotonic() - started > INLINE_BUDGET or not self.fast():
                    self.hand_off(_take_all(batch))
                    return
                try:
                    entry = batch.popleft()  # atomic: `take_stalled` may empty the batch meanwhile
                except IndexError:
                    return
                self.calls.run_message(entry, timings)
        finally:
            self._started = 0.0
            self.observe(timings)

    @staticmethod
    def receive_loop(
        raw: list[Any], take: Callable[[list[Any], float], bool], receive: Callable[[], list[Any]], at: float
    ) -> None:
        """On the receiving thread: `take` what a receive brought (received at `at`), then receive
        and take again, a bare receive/handle loop, while `take` says to go on."""
        while take(raw, at):
            at = time.monotonic()
            raw = receive()

    def take_stalled(self) -> bool:
        """On the main thread, waiting for a batch in line: if it has run for STALLED, hand the
        rest to the handler threads and say so (the main thread then stops waiting for it)."""
        started = self._started
        if not started or time.monotonic() - started < STALLED:
            return False
        self.hand_off(_take_all(self._batch))
        return True


def _take_all(batch: deque[InFlight]) -> list[InFlight]:
    taken = []
    while True:
        try:
            taken.append(batch.popleft())
        except IndexError:
            return taken
