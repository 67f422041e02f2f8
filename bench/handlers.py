"""Handlers the benchmark runs inside the daemon (and the bare loop)."""

from __future__ import annotations

import json
import os
import time

from poller import Message


def noop(message: Message) -> None:
    """Does nothing: what is measured is the consumer's own cost."""


def stamp(message: Message) -> None:
    """Records send -> handler start latency; the body is {"t": time.time() at send}."""
    latency = time.time() - json.loads(message.body)["t"]
    fd = os.open(os.environ["BENCH_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{latency:.6f}\n".encode())
    finally:
        os.close(fd)


def sleep_100ms(message: Message) -> None:
    """An I/O-bound handler: waits 100 ms, as for a slow downstream call."""
    time.sleep(0.1)


def lambda_noop(event: dict, context: object) -> None:
    """An unchanged-Lambda-style handler that does nothing: the style's own cost."""


async def sleep_100ms_async(message: Message) -> None:
    """The same I/O-bound handler as a coroutine: awaits 100 ms."""
    import asyncio

    await asyncio.sleep(0.1)


def sleep_200ms(message: Message) -> None:
    """A low-priority queue's slow work: 200 ms a message."""
    time.sleep(0.2)


def _fleet_record(message: Message, seconds: float) -> None:
    """The fleet drill's handlers: a "start" line, work for `seconds`, an "end" line, each one JSON
    line appended to $RECORD_FILE (atomic appends) with the body's id, the receive count and the
    instance, so the drill can tell what each instance held and finished."""
    _fleet_line(message, "start")
    time.sleep(seconds)
    _fleet_line(message, "end")


def _fleet_line(message: Message, phase: str) -> None:
    line = json.dumps(
        {
            "id": json.loads(message.body)["id"],
            "phase": phase,
            "message_id": message.message_id,
            "receive_count": message.receive_count,
            "instance": os.environ.get("FLEET_INSTANCE", ""),
            "t": time.time(),
        }
    )
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def fleet_20ms(message: Message) -> None:
    _fleet_record(message, 0.02)


def fleet_200ms(message: Message) -> None:
    _fleet_record(message, 0.2)


def fleet_1s(message: Message) -> None:
    _fleet_record(message, 1.0)
