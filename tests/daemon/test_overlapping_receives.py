"""Receives that overlap while the queue is busy (longpoll.py `receive_many`): a Worker on an
in-memory SQS whose every receive takes a round trip. The worker never asks for more than its
free slots, counting those the receives still out may fill; a stop releases what they bring."""

from __future__ import annotations

import threading
import time
from typing import Any

from poller.daemon.worker import Worker
from poller.dev.memsqs import MemorySqs
from tests.daemon import memworker


class CountingSqs(MemorySqs):
    """Keeps, at the start of every receive, the messages asked for by receives then out plus
    those received and not yet finished by the handler: what the worker had promised slots to."""

    def __init__(self, round_trip: float):
        super().__init__(round_trip=round_trip, refill=lambda n: ["{}"] * n)
        self.count_lock = threading.Lock()
        self.asked_out = self.received_total = self.finished = 0
        self.promised: list[int] = []
        self.receipts: list[str] = []

    def receive(self, url: str, count: int, wait: int, visibility: int | None = None) -> list[dict[str, Any]]:
        with self.count_lock:
            self.asked_out += count
            self.promised.append(self.asked_out + self.received_total - self.finished)
        got = super().receive(url, count, wait, visibility)
        with self.count_lock:
            self.asked_out -= count
            self.received_total += len(got)
            self.receipts += [m["ReceiptHandle"] for m in got]
        return got


def make_worker(sqs: MemorySqs, handle: Any, concurrency: int) -> Worker:
    return memworker.make_worker(sqs, handle, workers={"concurrency": concurrency})[0]


def test_a_busy_queue_never_gets_more_asked_of_it_than_the_worker_has_slots_for() -> None:
    # GIVEN a queue that always has more, 50 ms receives, and 40 slots of 30 ms handlers
    sqs = CountingSqs(round_trip=0.05)

    def handle(message: Any) -> None:
        time.sleep(0.03)
        with sqs.count_lock:
            sqs.finished += 1

    worker = make_worker(sqs, handle, concurrency=40)
    # WHEN the worker runs for a while
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        worker.loop()
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    time.sleep(0.2)  # receives still out return, and what they bring is released
    # THEN receives overlapped (several out at once), yet at no receive did the messages asked
    # for by receives out, plus those held, exceed the 40 slots
    assert sqs.receives > 40 and max(sqs.promised) > 20
    assert max(sqs.promised) <= 40
    # AND every message received was handled and deleted, or released at the stop
    released = {r for r, seconds, _ in sqs.visibility if seconds == 0}
    assert set(sqs.receipts) == set(sqs.deleted) | released


def test_messages_that_receives_out_bring_after_a_stop_go_back_to_the_queue() -> None:
    # GIVEN slow receives (300 ms) and a busy queue, with receives out
    sqs = CountingSqs(round_trip=0.3)
    worker = make_worker(sqs, lambda m: None, concurrency=40)
    while worker.receiver.out == 0:
        worker.loop()
    # WHEN the worker stops while they are out
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    time.sleep(0.6)  # the receives out return
    # THEN every message they brought was released (visible again at once), none handled twice
    released = [r for r, seconds, _ in sqs.visibility if seconds == 0]
    assert released and len(released) == len(set(released))
    assert set(sqs.receipts) == set(sqs.deleted) | set(released)
    assert not set(sqs.deleted) & set(released)
