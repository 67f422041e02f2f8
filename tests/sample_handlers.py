"""Handlers the integration tests run inside the real daemon.

Each records what it saw as one JSON line appended to $RECORD_FILE (appends of one short line
are atomic, so several worker processes can share the file).
"""

from __future__ import annotations

import json
import os
import time

from poller import Message, Poison, Retry


def record(message: Message, **extra: object) -> None:
    line = json.dumps(
        {
            "id": message.message_id,
            "body": message.body,
            "receive_count": message.receive_count,
            "group": message.group_id,
            "pid": os.getpid(),
            "t": time.time(),
            **extra,
        }
    )
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def noop(message: Message) -> None:
    record(message)


def quiet(message: Message) -> None:
    """Does nothing at all (for load tests that count through metrics)."""


def fail_twice(message: Message) -> None:
    record(message)
    if message.receive_count <= 2:
        raise RuntimeError(f"transient failure {message.receive_count}")


def poison(message: Message) -> None:
    record(message)
    raise Poison("cannot parse payload")


def always_fail(message: Message) -> None:
    record(message)
    raise ValueError("boom")


def retry_in(message: Message) -> None:
    record(message)
    if message.receive_count == 1:
        raise Retry(delay=float(os.environ.get("RETRY_DELAY", "3")))


def slow(message: Message) -> None:
    """Sleeps for the number of seconds in the body (JSON {"sleep": s})."""
    record(message, phase="start")
    time.sleep(float(message.json().get("sleep", 1)))
    record(message, phase="end")


def by_body(message: Message) -> None:
    """JSON body {"fail": [receive counts that fail], "sleep": s}: a scriptable handler."""
    payload = message.json()
    record(message, phase="start")
    time.sleep(float(payload.get("sleep", 0)))
    if message.receive_count in payload.get("fail", []):
        record(message, phase="failed")
        raise RuntimeError("scripted failure")
    record(message, phase="end")


class WithOptions:
    """A handler class: constructed once per worker with [handler.options]."""

    def __init__(self, options: dict):
        self.tag = options["tag"]

    def handle(self, message: Message) -> None:
        record(message, tag=self.tag)

    def close(self) -> None:
        pass


class BrokenConstructor:
    def __init__(self, options: dict):
        raise ConnectionError("cannot reach the legacy database")

    def handle(self, message: Message) -> None:
        pass
