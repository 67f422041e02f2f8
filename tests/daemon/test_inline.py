"""Fast handlers run on the receiving thread (poller/daemon/inline.py): what a user sees must not
change. A handler that blocks in line holds one slot and nothing else, a stop releases what a
batch in line has not started, and slow handlers keep their handler threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from poller.daemon import inline
from poller.dev.memsqs import MemorySqs
from tests.daemon.memworker import make_worker


@pytest.fixture
def roomy(monkeypatch):
    """A shared test machine can make a fast handler slow: here any handler under 50 ms counts
    as fast, and a batch may run in line for 2 s."""
    monkeypatch.setattr(inline, "INLINE_PACE", 0.05)
    monkeypatch.setattr(inline, "INLINE_BUDGET", 2.0)


def run_until(worker: Any, done: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not met"
        worker.loop()


def test_a_handler_that_blocks_in_line_holds_its_slot_only(roomy):
    # GIVEN fast handlers (so batches run on the receiving thread) and, in the third batch, one
    # message whose handler blocks until released
    sqs = MemorySqs()
    bodies = [f"fast-{n}" for n in range(60)]
    bodies[22] = "block"
    receipts = {body: sqs.put(body) for body in bodies}
    release = threading.Event()
    threads: dict[str, str] = {}

    def handle(message: Any) -> None:
        threads[message.body] = threading.current_thread().name
        if message.body == "block":
            assert release.wait(30)

    worker, _ = make_worker(sqs, handle, workers={"concurrency": 10}, queue={"wait_time_seconds": 1})
    # WHEN the worker runs while that handler is blocked
    run_until(worker, lambda: len(sqs.deleted) == len(bodies) - 1)
    # THEN every other message was handled and deleted meanwhile, the blocked one is still held
    # (its visibility kept up, not deleted, not released), and batches did run in line
    assert receipts["block"] not in sqs.deleted
    assert [e.message.body for e in worker.held.snapshot()] == ["block"]
    assert threads["block"].startswith("long-poll")
    assert sum(name.startswith("long-poll") for name in threads.values()) >= 20
    # WHEN it is released, THEN it is deleted too, and the worker stops cleanly
    release.set()
    run_until(worker, lambda: len(sqs.deleted) == len(bodies))
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    assert sorted(sqs.deleted) == sorted(receipts.values())
    assert not sqs.sent  # nothing dead-lettered


def test_a_stop_during_a_batch_in_line_releases_what_it_has_not_started(roomy):
    # GIVEN fast handlers, and a SIGTERM that arrives while the fifth message of a batch runs
    sqs = MemorySqs()
    worker: Any = None
    handled: list[str] = []

    def handle(message: Any) -> None:
        handled.append(message.body)
        if message.body == "stop-here":
            worker.request_stop()

    worker, _ = make_worker(sqs, handle, workers={"concurrency": 10}, queue={"wait_time_seconds": 1})
    for n in range(20):  # two batches to bring the pace down
        sqs.put(f"warm-{n}")
    run_until(worker, lambda: len(sqs.deleted) == 20)
    assert worker.inline.fast()
    batch = [sqs.put(body) for body in ["a", "b", "c", "d", "stop-here", "e", "f", "g", "h", "i"]]
    # WHEN the worker receives that batch and stops
    run_until(worker, lambda: worker.stopping)
    assert worker.shutdown() == 0
    # THEN the five that ran were deleted and the five that had not started were made visible
    # again at once, never run
    assert handled[-5:] == ["a", "b", "c", "d", "stop-here"]
    assert "e" not in handled
    assert set(batch[:5]) <= set(sqs.deleted)
    assert sorted(r for r, seconds, _ in sqs.visibility if seconds == 0) == sorted(batch[5:])


def test_slow_handlers_run_on_handler_threads():
    # GIVEN handlers that take 20 ms (an I/O call): in line they would run one after another
    sqs = MemorySqs()
    threads: list[str] = []

    def handle(message: Any) -> None:
        threads.append(threading.current_thread().name)
        time.sleep(0.02)

    worker, _ = make_worker(sqs, handle, workers={"concurrency": 10}, queue={"wait_time_seconds": 1})
    for n in range(40):
        sqs.put(f"m-{n}")
    # WHEN the worker runs them
    run_until(worker, lambda: len(sqs.deleted) == 40)
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN after the first, none ran on the receiving thread
    assert all(name.startswith("handler-") for name in threads[1:]), threads
