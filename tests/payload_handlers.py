"""Handlers the payload and tracing integration tests run inside the real daemon.

Each appends one short JSON line to $RECORD_FILE with a digest of the body, never the body
itself (a 2 MiB line would not be one atomic append).
"""

from __future__ import annotations

import hashlib
import json
import os

import structlog

from poller import Message, Poison


def record(message: Message) -> None:
    line = json.dumps(
        {
            "id": message.message_id,
            "sha256": hashlib.sha256(message.body.encode("utf-8")).hexdigest(),
            "bytes": len(message.body.encode("utf-8")),
            "attributes": sorted(message.message_attributes),
            "receive_count": message.receive_count,
        }
    )
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def digest(message: Message) -> None:
    record(message)


def poison_unless_replayed(message: Message) -> None:
    """Poison on first delivery; handled once `dlq replay` has sent it back."""
    record(message)
    if "poller.replays" not in message.message_attributes:
        raise Poison("first delivery refused on purpose")


def log_handled(message: Message) -> None:
    """A log line from inside the handler: the daemon's context adds trace_id and span_id."""
    structlog.get_logger("handler").info("handled", message_id=message.message_id)
    record(message)
