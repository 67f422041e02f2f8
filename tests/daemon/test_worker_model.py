"""The worker model through its seams (a Worker on the in-memory SQS): a timed-out call keeps its
slot, a slow delete never delays an extension, nothing is extended after its delete, replies
back are collected before a pause or a stop, background loops survive, buffered deletes are
flushed at shutdown, and one message received twice in one delete batch settles cleanly."""

from __future__ import annotations

import threading
import time
from typing import Any

from poller.daemon.worker import Worker
from poller.dev.memsqs import MemorySqs
from poller.pipeline import Pipeline
from tests.daemon.memworker import make_worker, value


def run_for(worker: Worker, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not worker.stopping:
        worker.loop()


def loop_in_thread(worker: Worker) -> threading.Thread:
    def run() -> None:
        while not worker.stopping:
            worker.loop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class TimedSqs(MemorySqs):
    """Records when each delete and visibility change happened; deletes may be slow."""

    def __init__(self, delete_takes: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.delete_takes = delete_takes
        self.events: list[tuple[float, str, str, int]] = []  # (time, call, receipt, seconds)

    def delete_batch(self, url: str, receipts: list[tuple[str, str]]) -> list[Any]:
        time.sleep(self.delete_takes)
        failures = super().delete_batch(url, receipts)
        self.events += [(time.monotonic(), "delete", r, 0) for _, r in receipts]
        return failures

    def change_visibility_batch(self, url: str, changes: list[tuple[str, str, int]]) -> list[Any]:
        self.events += [(time.monotonic(), "visibility", r, s) for _, r, s in changes]
        return super().change_visibility_batch(url, changes)


def test_a_timed_out_call_keeps_its_slot_so_no_message_waits_for_a_thread():
    # GIVEN one slot, a handler that blocks on the first message past its 1 s timeout
    sqs = MemorySqs()
    blocked = threading.Event()
    stuck = sqs.put("stuck")
    waiting = sqs.put("waiting")
    worker, registry = make_worker(
        sqs,
        lambda m: blocked.wait(30) if m.body == "stuck" else None,
        workers={"concurrency": 1},
        handler={"timeout": 1},
    )
    # WHEN the worker runs for 3 s
    run_for(worker, 3)
    # THEN the first timed out (and went back), but the second was never received: its thread
    # would not have been free, so it stays on the queue for a worker that can run it
    assert value(registry, "sqs_poller_handler_timeouts_total") == 1
    assert any(r == stuck and s > 0 for r, s, _ in sqs.visibility)
    assert [m["ReceiptHandle"] for m in sqs.inbox] == [waiting]
    blocked.set()
    worker.begin_stop("test over")
    assert worker.shutdown() == 0


def test_a_slow_delete_never_delays_a_visibility_extension():
    # GIVEN deletes that take 4 s, a 3 s visibility timeout (extended 1 s before it ends), and a
    # fast message beside a 5 s one
    sqs = TimedSqs(delete_takes=4.0)
    sqs.put("fast")
    slow = sqs.put("slow")
    worker, _ = make_worker(
        sqs, lambda m: time.sleep(5) if m.body == "slow" else None, queue={"visibility_timeout": 3}
    )
    received = time.monotonic()
    # WHEN the worker runs both (the fast one's delete blocks for 4 s meanwhile)
    run_for(worker, 6)
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN the slow one was extended every time before its visibility ran out, never late
    extended = [t for t, call, r, s in sqs.events if call == "visibility" and r == slow and s == 3]
    assert len(extended) >= 2
    deadlines = [received + 3] + [t + 3 for t in extended]
    assert all(t < deadline for t, deadline in zip(extended, deadlines, strict=False))


def test_no_message_is_extended_after_its_delete():
    # GIVEN messages whose run time straddles the moment their extension is due (2 s of a 3 s
    # visibility timeout)
    sqs = TimedSqs()
    for n in range(8):
        sqs.put(f"{1.85 + n * 0.04:.2f}")
    worker, _ = make_worker(
        sqs, lambda m: time.sleep(float(m.body)), queue={"visibility_timeout": 3}, workers={"concurrency": 8}
    )
    # WHEN they all run and are deleted
    run_for(worker, 4)
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN no visibility change of a message came after its delete
    deleted_at = {r: t for t, call, r, _ in sqs.events if call == "delete"}
    assert len(deleted_at) == 8
    late = [r for t, call, r, _ in sqs.events if call == "visibility" and t > deleted_at[r]]
    assert late == []


def test_replies_back_when_the_breaker_opens_are_collected_and_go_back_at_once():
    # GIVEN a busy queue (receives overlap, 0.3 s each) and a handler that is running
    sqs = MemorySqs(round_trip=0.3, refill=lambda n: ["m"] * n)
    worker, _ = make_worker(sqs, lambda m: time.sleep(0.05), workers={"concurrency": 40})
    loop = loop_in_thread(worker)
    time.sleep(1.0)
    # WHEN the host's breaker opens while receives are out
    from tests.pipeline.test_flow_logic import open_breaker

    open_breaker(worker.flow, time.monotonic)
    time.sleep(2.0)
    # THEN every message received was settled within moments (deleted, or sent back with the
    # cooldown as its visibility), none left hidden unseen through the cooldown
    with sqs.lock:
        received = set(sqs.received)
    settled = set(sqs.deleted) | {r for r, _, _ in sqs.visibility}
    assert received and received <= settled
    assert any(s >= 30 for _, s, _ in sqs.visibility)  # (breaker_cooldown: 30 s)
    worker.begin_stop("test over")
    loop.join(10)
    assert worker.shutdown() == 0


def test_replies_of_receives_out_at_a_stop_are_released_before_shutdown_returns():
    # GIVEN overlapping receives out (0.2 s each) on a busy queue
    sqs = MemorySqs(round_trip=0.2, refill=lambda n: ["m"] * n)
    worker, _ = make_worker(sqs, lambda m: None, workers={"concurrency": 40})
    while worker.receiver.out < 2:
        worker.loop()
    # WHEN the worker stops while they are out
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN by the time shutdown returns (the process would exit) every message received is
    # deleted or visible again: none left hidden for its visibility timeout
    settled = set(sqs.deleted) | {r for r, s, _ in sqs.visibility if s == 0}
    assert set(sqs.received) <= settled and settled


def test_background_loops_survive_an_unexpected_exception():
    # GIVEN a pipeline step whose settled hook (run by the housekeeper after a delete) raises once
    class Flaky:
        failed = False

        def settled(self, message: Any, outcome: str) -> None:
            if not Flaky.failed:
                Flaky.failed = True
                raise RuntimeError("a bug in a step")

    sqs = MemorySqs()
    receipts = [sqs.put(f"m{n}") for n in range(3)]
    worker, registry = make_worker(sqs, lambda m: None, pipeline=Pipeline([Flaky()]))
    run_for(worker, 1.0)
    later = [sqs.put(f"later{n}") for n in range(3)]
    run_for(worker, 1.0)
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN the error was counted against its thread, and every delete still happened
    assert value(registry, "sqs_poller_loop_errors_total", thread="housekeeper") == 1
    assert set(receipts + later) <= set(sqs.deleted)


def test_buffered_deletes_are_flushed_at_shutdown():
    # GIVEN deletes that linger for a fuller batch
    sqs = MemorySqs()
    receipts = [sqs.put(f"m{n}") for n in range(7)]
    handled: list[str] = []
    worker, _ = make_worker(sqs, lambda m: handled.append(m.body))
    # WHEN the worker stops the moment its handlers are done
    while len(handled) < 7:
        worker.loop()
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN every delete went out before shutdown returned
    assert sorted(sqs.deleted) == sorted(receipts)


def test_one_message_received_twice_in_one_delete_batch_settles_both_receipts():
    # GIVEN SQS handing out one message twice (two receipts) in one reply
    sqs = MemorySqs()
    first = sqs.put("twice")
    with sqs.lock:
        copy = dict(sqs.inbox[0], ReceiptHandle="rh-copy")
        sqs.inbox.append(copy)
    handled: list[str] = []
    worker, registry = make_worker(sqs, lambda m: handled.append(m.message_id))
    # WHEN both run and their deletes share one batch
    while len(handled) < 2:
        worker.loop()
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN both receipts were deleted, in one request, and counted
    assert sorted(sqs.deleted) == sorted([first, "rh-copy"]) and sqs.delete_calls == 1
    assert value(registry, "sqs_poller_messages_total", outcome="deleted") == 2


def test_after_a_failure_the_rest_of_a_fifo_group_goes_back_with_the_failed_ones_delay():
    # GIVEN a FIFO group of three whose first message fails (retried after its backoff)
    sqs = MemorySqs()
    receipts = [sqs.put(f"m{n}") for n in range(3)]
    with sqs.lock:
        for message in sqs.inbox:
            message["Attributes"]["MessageGroupId"] = "g"

    def handle(message: Any) -> None:
        if message.body == "m0":
            raise ValueError("downstream said no")

    fifo = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo"
    worker, _ = make_worker(sqs, handle, queue={"url": fifo, "dlq_url": fifo.replace("jobs", "dlq")})
    # WHEN the worker runs the group
    run_for(worker, 1.0)
    worker.begin_stop("test over")
    assert worker.shutdown() == 0
    # THEN the failed one and the two after it are visible again at the same moment, so no
    # server can hand out the later ones first; none of them ran or was deleted
    delays = {r: s for r, s, _ in sqs.visibility}
    assert delays[receipts[0]] > 0
    assert delays[receipts[1]] == delays[receipts[2]] == delays[receipts[0]]
    assert sqs.deleted == []
