"""The main thread's wait while a long poll is out (receiver.py) ends when the reply comes or a
stop begins, without looking at the clock in between: a stop during a 20 s poll is seen at once,
and a reply is taken as it comes, not at the next look."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from poller.daemon import worker as worker_module
from poller.dev.memsqs import MemorySqs
from tests.daemon.memworker import make_worker


class PollSqs(MemorySqs):
    """Every receive is a long poll: after `seconds` it returns what is queued (on an empty
    queue, nothing)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.polling = threading.Event()

    def receive(self, url: str, count: int, wait: int, visibility: int | None = None) -> list[dict[str, Any]]:
        self.polling.set()
        time.sleep(self.seconds)
        with self.lock:
            self.receives += 1
            got, self.inbox = self.inbox[:count], self.inbox[count:]
        return got


def loop_until_stopping(worker: Any) -> None:
    while not worker.stopping:
        worker.loop()


def test_a_stop_during_a_long_poll_is_seen_at_once_not_at_the_next_look(monkeypatch) -> None:
    # GIVEN a worker in a 5 s long poll, and nothing that would look at the stop for 30 s
    monkeypatch.setattr(worker_module, "STOP_CHECK", 30.0)
    sqs = PollSqs(5.0)
    worker, _ = make_worker(sqs, lambda message: None)
    loop = threading.Thread(target=loop_until_stopping, args=(worker,))
    loop.start()
    assert sqs.polling.wait(5)
    # WHEN SIGTERM's handler runs
    asked = time.monotonic()
    worker.request_stop(signal.SIGTERM)
    loop.join(10)
    # THEN the loop returned well before the poll did, and the worker stops cleanly
    assert not loop.is_alive()
    assert time.monotonic() - asked < 2.0
    assert worker.stopping
    assert worker.shutdown() == 0


def test_a_reply_ends_the_wait_without_a_look_at_the_clock(monkeypatch) -> None:
    # GIVEN polls that return after 50 ms, and the periodic look pushed out to 30 s
    monkeypatch.setattr(worker_module, "STOP_CHECK", 30.0)
    sqs = PollSqs(0.05)
    worker, _ = make_worker(sqs, lambda message: None)
    # WHEN the worker loops until ten receives were made
    started = time.monotonic()
    while sqs.receives < 10:
        worker.loop()
    # THEN each reply was taken as it came (a wait that needed the periodic look would take 30 s)
    assert time.monotonic() - started < 10
    worker.begin_stop("test over")
    assert worker.shutdown() == 0


def test_a_reply_arriving_just_after_a_stop_is_released_before_the_worker_exits() -> None:
    # GIVEN a worker whose receive is out, its reply (three messages) 100 ms away
    sqs = PollSqs(0.1)
    receipts = [sqs.put(f"m{n}") for n in range(3)]
    worker, _ = make_worker(sqs, lambda message: None)
    loop = threading.Thread(target=loop_until_stopping, args=(worker,))
    loop.start()
    assert sqs.polling.wait(5)
    # WHEN SIGTERM's handler runs, and the worker shuts down as soon as its loop returns
    worker.request_stop(signal.SIGTERM)
    loop.join(10)
    assert worker.shutdown() == 0
    # THEN by the time it is done (a worker process exits then) the three are visible again:
    # a reply left to come in after the exit would keep them hidden for the visibility timeout
    released = {receipt for receipt, seconds, _ in sqs.visibility if seconds == 0}
    assert released == set(receipts)
    assert not sqs.deleted
