"""Handlers for the worker-model tests, run inside the real daemon. Each records one short JSON
line to $RECORD_FILE (appends of one short line are atomic across processes)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from poller import Message


def record(**fields: Any) -> None:
    line = json.dumps(
        {"pid": os.getpid(), "thread": threading.current_thread().name, "t": time.time(), **fields}
    )
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def hang_or_record(message: Message) -> None:
    """Body "hang": blocks forever, as a handler stuck on a dead socket does; else records."""
    record(id=message.message_id, body=message.body)
    if message.body == "hang":
        threading.Event().wait()


def lambda_sleeps(event: dict[str, Any], context: Any) -> None:
    """An unchanged Lambda handler that takes $SLEEP seconds a call and always succeeds."""
    for item in event["Records"]:
        record(id=item["messageId"], left_ms=context.get_remaining_time_in_millis())
    time.sleep(float(os.environ.get("SLEEP", "1")))


def _traced(fn: Any) -> Any:
    """A decorator as tracing and retry libraries write them: sync wrapper, coroutine inside."""

    def wrapper(message: Message) -> Any:
        return fn(message)

    return wrapper


@_traced
async def decorated_async(message: Message) -> None:
    record(id=message.message_id, body=message.body, awaited=True)
    if message.body == "fail" and message.receive_count == 1:
        raise RuntimeError("failed inside the coroutine")


def thread_name(message: Message) -> None:
    record(id=message.message_id)


def thread_names_batch(messages: list[Message]) -> None:
    for message in messages:
        record(id=message.message_id)


async def thread_name_async(message: Message) -> None:
    record(id=message.message_id)


def tagged(message: Message) -> None:
    """Records its queue and body; body "poison" is dead-lettered, "sleep:S" sleeps S seconds,
    "down" raises Unavailable (the downstream of this queue is down)."""
    from poller import Poison, Unavailable

    queue = message.queue_url.rpartition("/")[2]
    record(
        id=message.message_id,
        queue=queue,
        body=message.body,
        phase="start",
        sent=float(message.attributes.get("SentTimestamp", 0)) / 1000,
    )
    if message.body == "poison":
        raise Poison("cannot parse")
    if message.body == "down":
        raise Unavailable("legacy system down")
    if message.body.startswith("sleep:"):
        time.sleep(float(message.body.split(":")[1]))
    record(id=message.message_id, queue=queue, body=message.body, phase="end")


def tagged_other(message: Message) -> None:
    """The same as `tagged`, under another name (a second handler in one daemon)."""
    record(
        id=message.message_id, queue=message.queue_url.rpartition("/")[2], body=message.body, phase="other"
    )
