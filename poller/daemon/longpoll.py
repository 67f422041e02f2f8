"""The worker's receive: a long poll that a stop never waits for (up to 20 s, or a read timeout
against an endpoint that never answers), and that tells readiness how receives go. While the
queue is busy, receives overlap (`receive_many`): each reply is collected as it returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from poller.daemon.readiness import ReceiveHealth
from poller.errors import SqsError
from poller.sqs import Sqs

# A wait for a receive ends when a reply comes or `wake()` is called (a stop began); it looks at
# `stopped()` at least this often besides, for what nothing reports (the supervisor gone).
STOP_CHECK = 1.0
# A stop abandons a receive still out, but lets a reply this close to arriving come in first
# (a busy queue answers in milliseconds): the worker releases what it brings before it exits,
# where a reply that came after the process would stay hidden for its visibility timeout.
ABANDON_GRACE = 0.25
POLLERS = 10  # threads that make receive calls: the parallel receives of a busy queue, and one


class LongPoll:
    def __init__(
        self,
        sqs: Sqs,
        stopped: Callable[[], bool],
        health: ReceiveHealth | None = None,
        on_reply: Callable[[], None] | None = None,
    ):
        self.sqs = sqs
        self.stopped = stopped
        self.health = health or ReceiveHealth()
        self.on_reply = on_reply  # a busy-queue receive returned (from a pool thread)
        self.pool = ThreadPoolExecutor(POLLERS, thread_name_prefix="long-poll")  # threads reused
        self._out: list[tuple[Future[Any], int, float]] = []  # (receive, count asked, sent at)
        self._changed = threading.Condition()  # an RLock: `wake` may run in a signal handler
        self._woken = False

    def wake(self) -> None:
        """Make the wait for a receive look at `stopped()` now. Safe in a signal handler of the
        waiting thread (the condition's lock is reentrant)."""
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    def _wait(self, done: Callable[[], bool], timeout: float = STOP_CHECK) -> None:
        """Until `done()`, a `wake()`, or `timeout`: one wake-up a reply, no polling."""
        with self._changed:
            if not done() and not self._woken:
                self._changed.wait(timeout)
            self._woken = False

    def _grace(self, done: Callable[[], bool]) -> None:
        """Stopping: wait up to ABANDON_GRACE for `done()` (replies wake the wait)."""
        deadline = time.monotonic() + ABANDON_GRACE
        while not done() and (left := deadline - time.monotonic()) > 0:
            self._wait(done, left)

    def _call(
        self,
        fn: Callable[[], Any],
        on_late: Callable[[Any], None],
        stalled: Callable[[], bool] | None = None,
    ) -> tuple[bool, Any]:
        """Run `fn` on a pool thread and wait for it. Returns (True, its result), or raises what it
        raised; or, once `stopped()` and the call has not returned within ABANDON_GRACE,
        (False, None), and `on_late(result)` runs whenever the abandoned call returns a result;
        or (True, None) once `stalled()` says the caller need not wait any longer."""
        future: Future[Any] = self.pool.submit(fn)
        future.add_done_callback(lambda _: self.wake())
        while not future.done():
            self._wait(future.done)
            if not future.done() and stalled is not None and stalled():
                return True, None
            if not future.done() and self.stopped():
                self._grace(future.done)
                if future.done():
                    break
                future.add_done_callback(lambda f: f.exception() is None and on_late(f.result()))
                return False, None
        return True, future.result()

    def receive(
        self,
        url: str,
        count: int,
        wait: int,
        visibility: int,
        then: Callable[[list[dict[str, Any]]], Any] | None = None,
        stalled: Callable[[], bool] | None = None,
    ) -> Any:
        """Messages, or [] once `stopped()` abandons the poll (the worker does so on a stop with
        nothing in flight): what its reply brings later is released if the process lives that
        long, else it reappears after its visibility timeout.
        `then`: runs on the receiving thread with the messages, and what it returns is returned
        (it takes them over, releasing them itself if the poll was abandoned meanwhile);
        `stalled()`, asked while waiting, ends the wait early, returning []."""

        def call() -> Any:
            raw = self.sqs.receive(url, count, wait, visibility)
            return raw if then is None else then(raw)

        try:
            done, raw = self._call(
                call, (lambda late: self._release(url, late)) if then is None else _ignore, stalled
            )
        except SqsError as exc:
            self.health.failed(exc)
            raise
        if done:
            self.health.ok()
        return [] if raw is None else raw

    def receive_here(self, url: str, count: int, wait: int, visibility: int) -> list[dict[str, Any]]:
        """A receive on the calling thread (a receiving thread going on by itself), noted in the
        receive health; its errors are the caller's."""
        raw = self.sqs.receive(url, count, wait, visibility)
        self.health.ok()
        return raw

    @property
    def out(self) -> int:
        """Busy-queue receives still out or not yet collected."""
        return len(self._out)

    @property
    def reserved(self) -> int:
        """Messages the receives out may bring: slots the worker must keep free for them."""
        return sum(count for _, count, _ in self._out)

    def replied(self) -> bool:
        return any(future.done() for future, _, _ in self._out)

    def receive_many(
        self, calls: int, url: str, count: int, wait: int, visibility: int
    ) -> tuple[list[dict[str, Any]], bool | None, float]:
        """For a busy queue: start `calls` more receives and collect, without waiting, what those
        out have brought so far (with `calls` 0, wait for one). Returns (messages, whether each
        collected reply was full or None if none was, when the first collected one was sent).
        Receives still out stay out (`reserved`), and `on_reply` runs as each returns: a slot
        freed meanwhile waits for the next reply, not for a whole round of receives to return.
        A failed receive gives nothing while others are out or succeeded (the worker's next
        receive asks again); all failing with none out raises the first error."""
        for _ in range(calls):
            future = self.pool.submit(self.sqs.receive, url, count, wait, visibility)
            future.add_done_callback(self._replied)
            self._out.append((future, count, time.monotonic()))
        while not calls and self._out and not self.replied():
            self._wait(self.replied)
            if self.stopped():
                self._grace(lambda: all(future.done() for future, _, _ in self._out))
                self.abandon(url)  # what came back within the grace is released at once
                return [], None, time.monotonic()
        done = [item for item in self._out if item[0].done()]
        self._out = [item for item in self._out if not any(item is d for d in done)]
        raw: list[dict[str, Any]] = []
        full: bool | None = None if not done else True
        errors = []
        for future, asked, _ in done:
            if (error := future.exception()) is not None:
                errors.append(error)
                full = False
                continue
            got = future.result()
            raw += got
            full = full and len(got) >= asked
        if errors and not raw and not self._out:
            self.health.failed(errors[0])  # type: ignore[arg-type]
            raise errors[0]
        if done and len(errors) < len(done):
            self.health.ok()
        return raw, full, min((sent for _, _, sent in done), default=time.monotonic())

    def abandon(self, url: str) -> None:
        """Stopping: what the receives out bring is released (at once, for those already back)."""
        out, self._out = self._out, []
        for future, _, _ in out:
            future.add_done_callback(lambda f: f.exception() is None and self._release(url, f.result()))

    def _replied(self, _: Future[Any]) -> None:
        self.wake()
        if self.on_reply is not None:
            self.on_reply()

    def _release(self, url: str, raw: list[dict[str, Any]]) -> None:
        """Messages a reply brought after the worker stopped waiting for it: visible again now."""
        if raw:
            self.sqs.change_visibility_batch(
                url, [(str(n), m["ReceiptHandle"], 0) for n, m in enumerate(raw)]
            )


def _ignore(_: Any) -> None:
    pass
