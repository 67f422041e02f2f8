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
