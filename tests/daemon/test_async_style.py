"""The async handler style through a whole Worker on an in-memory SQS (`MemorySqs`): a plain
message runs its pipeline steps on the event loop, a message some step waits on (an S3 pointer)
on a thread; either way every step sees it, pointers are resolved and timeouts hold."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry

from poller.daemon.worker import Worker
from poller.dev.memsqs import MemorySqs
from poller.message import Message, Unavailable
from poller.pipeline.payload import POINTER_CLASS, SIZE_ATTRIBUTE
from tests.daemon import memworker
from tests.daemon.memworker import value


def make_worker(sqs: MemorySqs, handle: Any, **sections: Any) -> tuple[Worker, CollectorRegistry]:
    return memworker.make_worker(sqs, handle, workers={"concurrency": 20}, **sections)


def run_until(worker: Worker, done: Any, timeout: float = 20) -> None:
    """Run the worker until `done()`, then stop it as SIGTERM would (also ends a breaker pause)."""
    deadline = time.monotonic() + timeout

    def watch() -> None:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.request_stop()

    threading.Thread(target=watch, daemon=True).start()
    while not worker.stopping:
        worker.loop()
    assert done(), "condition not met"
    assert worker.shutdown() == 0


def test_an_s3_pointer_and_a_plain_body_both_reach_an_async_handler_as_their_bodies(local_sqs: Any) -> None:
    # GIVEN an object in S3, a message pointing at it as AWS's extended client sends it, and a
    # plain message, for an async def handler
    s3 = local_sqs.client("s3")
    bucket, key = f"payloads-{uuid.uuid4().hex[:12]}", "big"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body="the offloaded body ü".encode())
    sqs = MemorySqs()
    pointer = sqs.put(
        json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}]),
        attributes={SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "21"}},
    )
    plain = sqs.put("a plain body")
    seen: dict[str, tuple[str, list[str]]] = {}

    async def handle(message: Message) -> None:
        await asyncio.sleep(0.01)
        seen[message.receipt_handle] = (message.body, sorted(message.message_attributes))

    worker, registry = make_worker(
        sqs, handle, payload={"endpoint_url": local_sqs.endpoint_url, "region": "us-east-1"}
    )
    # WHEN the worker runs both
    run_until(worker, lambda: len(sqs.deleted) == 2)
    # THEN the handler saw the object's text for the pointer (without the size attribute) and the
    # plain body as sent; both were deleted, and so was the object
    assert seen == {pointer: ("the offloaded body ü", []), plain: ("a plain body", [])}
    assert value(registry, "sqs_poller_messages_total", outcome="deleted") == 2
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_plain_messages_failing_on_an_async_handler_still_open_the_breaker() -> None:
    # GIVEN an async handler whose downstream is down, and a breaker that opens at half of 10
    sqs = MemorySqs()
    for n in range(10):
        sqs.put(f"m{n}")

    async def handle(message: Message) -> None:
        await asyncio.sleep(0)
        raise Unavailable("downstream down")

    worker, registry = make_worker(
        sqs, handle, flow={"breaker_min_messages": 10, "breaker_failure_ratio": 0.5, "breaker_cooldown": 60}
    )
    # WHEN the worker has run all ten
    run_until(worker, lambda: len({r for r, _, _ in sqs.visibility}) == 10)
    # THEN the flow step counted each failure: the breaker opened, and every message went back
    # to the queue for at least the cooldown, none dead-lettered
    assert value(registry, "sqs_poller_breaker_transitions_total", to="open") == 1
    assert value(registry, "sqs_poller_messages_total", outcome="retried") == 10
    assert all(seconds >= 60 for _, seconds, _ in sqs.visibility)
    assert sqs.sent == [] and sqs.deleted == []


def test_a_step_that_does_not_say_it_never_blocks_runs_off_the_event_loop() -> None:
    # GIVEN a pipeline step of unknown cost (no `blocks`) before an async handler
    from poller.pipeline import Pipeline

    threads: list[str] = []

    class Step:
        def before(self, message: Message) -> Message:
            threads.append(threading.current_thread().name)
            return message

    async def handle(message: Message) -> None:
        threads.append(threading.current_thread().name)

    sqs = MemorySqs()
    sqs.put("one")
    worker, _ = memworker.make_worker(sqs, handle, Pipeline([Step()]), workers={"concurrency": 2})
    # WHEN the worker runs the message
    run_until(worker, lambda: len(sqs.deleted) == 1)
    # THEN the step ran on a thread of its own, so it could not stall the other coroutines
    assert threads[1] == "event-loop" and threads[0] != "event-loop"


def test_an_async_handler_past_its_timeout_is_cancelled_and_its_message_retried_once() -> None:
    # GIVEN an async handler that would await 10 s, with a 1 s timeout
    sqs = MemorySqs()
    slow = sqs.put("slow")
    ended: list[str] = []

    async def handle(message: Message) -> None:
        try:
            await asyncio.sleep(10)
            ended.append("returned")
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    handler = {"target": "tests.sample_handlers:noop", "timeout": 1}
    worker, registry = make_worker(sqs, handle, handler=handler)
    started = time.monotonic()
    # WHEN the worker runs it
    run_until(worker, lambda: ended and not len(worker.held))
    # THEN it was timed out and put back once, its coroutine cancelled well before 10 s
    assert ended == ["cancelled"] and time.monotonic() - started < 8
    assert [r for r, seconds, _ in sqs.visibility if seconds > 0] == [slow]
    assert value(registry, "sqs_poller_handler_timeouts_total") == 1
    assert value(registry, "sqs_poller_messages_total", outcome="retried") == 1
    assert sqs.deleted == []
