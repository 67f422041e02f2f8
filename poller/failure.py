"""The `poller.failure` message attribute: why a message is in the dead-letter queue.

The daemon writes it on every DLQ copy; the DLQ tools read it (and drop it on replay, counting
replays in `poller.replays`). Its JSON holds the original message's id and send time, so an
operator can match a DLQ entry to the daemon's log lines, which carry the original id.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from typing import Any

from poller.message import Message

FAILURE_ATTRIBUTE = "poller.failure"
REPLAYS_ATTRIBUTE = "poller.replays"
MAX_ATTRIBUTES = 10  # SQS's limit of message attributes per message
MAX_ERROR_CHARS = 2000


def failure_record(message: Message, error: str, type_: str, host: str | None = None) -> str:
    """The attribute's value: compact JSON."""
    return json.dumps(
        {
            "error": error[:MAX_ERROR_CHARS],
            "type": type_,
            "source_queue": message.queue_url,
            "message_id": message.message_id,
            "sent_at": message.sent_at.astimezone(UTC).isoformat(timespec="milliseconds"),
            "receive_count": message.receive_count,
            "failed_at": datetime.now(tz=UTC).isoformat(timespec="milliseconds"),
            "host": host or socket.gethostname(),
        },
        separators=(",", ":"),
    )


def read_failure(message_attributes: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The parsed record from a DLQ message's attributes, or None when it has none."""
    attr = message_attributes.get(FAILURE_ATTRIBUTE)
    if not attr or "StringValue" not in attr:
        return None
    try:
        value = json.loads(attr["StringValue"])
    except ValueError:
        return {"error": attr["StringValue"], "type": "unparsable"}
    return value if isinstance(value, dict) else None


def replays(message_attributes: dict[str, dict[str, Any]]) -> int:
    """How many times the DLQ tools have replayed this message (its `poller.replays`)."""
    attr = message_attributes.get(REPLAYS_ATTRIBUTE)
    try:
        return int(float(attr["StringValue"])) if attr else 0
    except (KeyError, ValueError):
        return 0


def error_text(failure: dict[str, Any] | None) -> str:
    """'type: error', what `dlq replay --match-error` matches."""
    if not failure:
        return ""
    return f"{failure.get('type', '')}: {failure.get('error', '')}"
