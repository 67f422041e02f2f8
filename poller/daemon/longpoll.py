"""The worker's receive: a long poll that a stop never waits for (up to 20 s, or a read timeout
against an endpoint that never answers), and that tells readiness how receives go."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for
from typing import Any

from poller.daemon.readiness import ReceiveHealth
from poller.errors import SqsError
from poller.sqs import Sqs

STOP_CHECK = 0.1  # seconds between looks at the stop flag while a receive runs
POLLERS = 10  # threads that make receive calls: the parallel receives of a busy queue, and one


def call_unless_stopped(
    fn: Callable[[], Any],
    stopped: Callable[[], bool],
    on_late: Callable[[Any], None],
    pool: ThreadPoolExecutor,
) -> tuple[bool, Any]:
    """Run `fn` on a pool thread and wait for it. Returns (True, its result), or raises what it
    raised; or, once `stopped()`, (False, None) at once, and `on_late(result)` runs whenever the
    abandoned call returns a result."""
    future: Future[Any] = pool.submit(fn)
    while True:
        try:
            return True, future.result(timeout=STOP_CHECK)
        except FutureTimeout:
            if stopped():
                future.add_done_callback(lambda f: f.exception() is None and on_late(f.result()))
                return False, None


class LongPoll:
    def __init__(self, sqs: Sqs, stopped: Callable[[], bool], health: ReceiveHealth | None = None):
        self.sqs = sqs
        self.stopped = stopped
        self.health = health or ReceiveHealth()
        self.pool = ThreadPoolExecutor(POLLERS, thread_name_prefix="long-poll")  # threads reused

    def receive(self, url: str, count: int, wait: int, visibility: int) -> list[dict[str, Any]]:
        """Messages, or [] once `stopped()` abandons the poll (the worker does so on a stop with
        nothing in flight): what its reply brings later is released if the process lives that
        long, else it reappears after its visibility timeout."""

        try:
            done, raw = call_unless_stopped(
                lambda: self.sqs.receive(url, count, wait, visibility),
                self.stopped,
                lambda late: self._release(url, late),
                self.pool,
            )
        except SqsError as exc:
            self.health.failed(exc)
            raise
        if done:
            self.health.ok()
        return raw or []

    def receive_many(
        self, calls: int, url: str, count: int, wait: int, visibility: int
    ) -> list[dict[str, Any]]:
        """`calls` receives at once, for a busy queue: their messages together. A call that failed
        gives none while another succeeded (the next loop asks again); all failing raises the
        first error. Once `stopped()`, replies still to come are released as in `receive`."""
        futures = [self.pool.submit(self.sqs.receive, url, count, wait, visibility) for _ in range(calls)]
        pending = set(futures)
        while pending:
            _, pending = wait_for(pending, timeout=STOP_CHECK)
            if pending and self.stopped():
                for future in pending:
                    future.add_done_callback(
                        lambda f: f.exception() is None and self._release(url, f.result())
                    )
                break
        raw: list[dict[str, Any]] = []
        errors = [f.exception() for f in futures if f not in pending and f.exception() is not None]
        for future in futures:
            if future not in pending and future.exception() is None:
                raw += future.result()
        if errors and len(errors) == len(futures):
            self.health.failed(errors[0])  # type: ignore[arg-type]
            raise errors[0]  # type: ignore[misc]
        if not pending:
            self.health.ok()
        return raw

    def _release(self, url: str, raw: list[dict[str, Any]]) -> None:
        """Messages a reply brought after the worker stopped waiting for it: visible again now."""
        if raw:
            self.sqs.change_visibility_batch(
                url, [(str(n), m["ReceiptHandle"], 0) for n, m in enumerate(raw)]
            )
