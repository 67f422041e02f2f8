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
