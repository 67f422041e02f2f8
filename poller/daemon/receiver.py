"""The worker's receiver: every ReceiveMessage of one worker process goes through it.

It owns the receives out (long polls on the `receive-N` threads, which make those calls and
nothing else), the slots they reserve (a receive asks only for slots the worker can fill when
it returns), the backoff after a failed receive, and the one stop policy. The worker's main
thread starts receives and collects their replies; it never waits on a call itself: it waits on
the worker's condition, which a reply, a freed slot or a stop wakes.

How many receives to start, for how many messages each, is the worker's plan (lanes.py): while
the queue is busy (the last reply was full), receives overlap, each collected as it returns, so
a freed slot waits for the next reply, not for a round of receives; otherwise one long poll is
out at a time. Replies already back are collected, and so held (and
kept hidden by the timer) before anything else the main thread does: a pause or a stop never
leaves a reply waiting unseen.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from poller.daemon.readiness import ReceiveHealth
from poller.errors import SqsError
from poller.sqs import Sqs
from poller.timeouts import READ_SLACK, RECEIVE_BACKOFF_MAX

# A stop lets a reply this close to arriving come in first (a busy queue answers in
# milliseconds): the worker releases what it brings before it exits, where a reply that came
# after the process would stay hidden for its visibility timeout.
ABANDON_GRACE = 0.25
MAX_PARALLEL = 8  # receives out at once while the queue keeps them full
POLLERS = MAX_PARALLEL  # receive threads


@dataclass(eq=False, slots=True)
class Out:
    future: Future[list[dict[str, Any]]]
    asked: int
    wait: int  # WaitTimeSeconds
    sent: float
    back: float = 0.0  # when the reply came


class Receiver:
    def __init__(
        self,
        sqs: Sqs,
        url: str,
        batch_size: int,
        visibility: int,
        changed: threading.Condition,
        log: Any,
        health: ReceiveHealth | None = None,
        backoff_max: float = RECEIVE_BACKOFF_MAX,
    ):
        self.sqs = sqs
        self.url = url
        self.batch_size = batch_size
        self.visibility = visibility
        self.changed = changed  # the worker's condition: notified as each reply comes back
        self.log = log
        self.health = health or ReceiveHealth()
        self.backoff_max = backoff_max
        self.pool = ThreadPoolExecutor(POLLERS, thread_name_prefix="receive")
        self._out: list[Out] = []
        self.busy = False  # the last reply was full: more is waiting
        self.round_trip = 0.0  # the last receive that brought messages took this long
        self.ready_at = 0.0  # after a failed receive: no receive starts before this
        self._failures = 0

    # --- what the worker asks -------------------------------------------------------------------

    @property
    def out(self) -> int:
        return len(self._out)

    @property
    def reserved(self) -> int:
        """Messages the receives out may bring: slots the worker keeps free for them."""
        return sum(o.asked for o in self._out)

    def replied(self) -> bool:
        return any(o.back for o in self._out)

    def collect(self) -> tuple[list[dict[str, Any]], float]:
        """The messages of every reply back (none waits), and when the first of those receives
        was sent. A failed receive starts the backoff; receives still out stay out."""
        done = [o for o in self._out if o.back]
        if not done:
            return [], 0.0
        self._out = [o for o in self._out if not o.back]
        raw: list[dict[str, Any]] = []
        full, errors = True, []
        for o in done:
            if (error := o.future.exception()) is not None:
                errors.append(error)
                continue
            got = o.future.result()
            raw += got
            full = full and len(got) >= o.asked
            if got:
                self.round_trip = o.back - o.sent
        if errors and len(errors) == len(done):
            self._failed(errors[0])
        else:
            self._failures = 0
            self.health.ok()
        self.busy = full and not errors
        return raw, min(o.sent for o in done)

    def stop(self, wait_all: bool) -> list[dict[str, Any]]:
        """Stopping: wait for the receives out (all of them when `wait_all`: retiring, one long
        poll at most; else ABANDON_GRACE), and return what came back, for the worker to release.
        What comes back later is released as it arrives, if this process still lives."""
        deadline = time.monotonic() + ABANDON_GRACE
        if wait_all:
            deadline = max([deadline] + [o.sent + o.wait + READ_SLACK for o in self._out])
        with self.changed:
            while any(not o.back for o in self._out) and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(left)
        raw, _ = self.collect() if self.replied() else ([], 0.0)
        for o in self._out:  # still out: released on arrival
            o.future.add_done_callback(self._release_late)
        self._out = []
        self.pool.shutdown(wait=False)
        return raw

    # --- the calls ------------------------------------------------------------------------------

    def send(self, count: int, wait: int) -> None:
        """One receive asking for `count` messages (the worker's plan decided it fits)."""
        sent = time.monotonic()
        out = Out(
            self.pool.submit(self.sqs.receive, self.url, count, wait, self.visibility), count, wait, sent
        )
        self._out.append(out)
        out.future.add_done_callback(lambda _: self._replied(out))

    def _replied(self, out: Out) -> None:
        """On the receive thread: note the reply and wake the worker."""
        with self.changed:
            out.back = time.monotonic()
            self.changed.notify_all()

    def _failed(self, error: BaseException) -> None:
        self._failures += 1
        delay = min(self.backoff_max, 0.5 * 2 ** (self._failures - 1)) + random.uniform(0, 0.5)
        self.ready_at = time.monotonic() + delay
        if isinstance(error, SqsError):
            self.health.failed(error)
        self.log.warning(
            "receive_failed",
            error=str(error)[:500],
            code=getattr(error, "code", type(error).__name__),
            attempt=self._failures,
            retry_in=round(delay, 2),
        )

    def _release_late(self, future: Future[list[dict[str, Any]]]) -> None:
        """A reply that came after the worker stopped waiting for it: visible again now."""
        if future.exception() is None and (raw := future.result()):
            try:
                self.sqs.change_visibility_batch(
                    self.url, [(str(n), m["ReceiptHandle"], 0) for n, m in enumerate(raw)]
                )
            except SqsError:
                pass  # they reappear when their visibility timeout ends
