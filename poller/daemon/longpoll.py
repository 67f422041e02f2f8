"""The worker's receive: a long poll that a stop never waits for (up to 20 s, or a read timeout
against an endpoint that never answers), and that tells readiness how receives go."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
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

        def release(raw: list[dict[str, Any]]) -> None:
            if raw:
                self.sqs.change_visibility_batch(
                    url, [(str(n), m["ReceiptHandle"], 0) for n, m in enumerate(raw)]
                )

        try:
            done, raw = call_unless_stopped(
                lambda: self.sqs.receive(url, count, wait, visibility), self.stopped, release, self.pool
            )
        except SqsError as exc:
            self.health.failed(exc)
            raise
        if done:
            self.health.ok()
        return raw or []
