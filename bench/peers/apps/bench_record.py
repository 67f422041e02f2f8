"""What every consumer's handler does (standard library only, so each peer's virtualenv can
import it): parse the JSON payload, and append send-to-handle latency to BENCH_PEERS_RECORD."""

from __future__ import annotations

import json
import os
import time

_fd: list[int] = []


def record(sent: float, n: int) -> None:
    """One line per message handled: its number, and seconds from the producer's send to now."""
    latency = time.time() - sent
    if not _fd:  # opened once per process, appended atomically from every process
        _fd.append(os.open(os.environ["BENCH_PEERS_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    os.write(_fd[0], b"%d %.6f\n" % (n, latency))


def handle_body(body: str) -> None:
    """The no-op handler for a raw SQS body: parse the JSON, record."""
    payload = json.loads(body)
    record(payload["t"], payload["n"])


def handle_message(message: object) -> None:
    """sqs-poller's message-style handler."""
    handle_body(message.body)  # type: ignore[attr-defined]
