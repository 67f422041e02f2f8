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
from poller.sqs import MAX_MESSAGE_BYTES, entry_size

FAILURE_ATTRIBUTE = "poller.failure"
REPLAYS_ATTRIBUTE = "poller.replays"
MAX_ATTRIBUTES = 10  # SQS's limit of message attributes per message
MAX_ERROR_CHARS = 2000
SHORTER_ERRORS = (MAX_ERROR_CHARS, 500, 100, 0)  # what a record near the size limit keeps
TOO_LARGE_MARGIN = 600  # bytes: a DLQ copy this close to the limit had no room for the record


def failure_record(
    message: Message,
    error: str,
    type_: str,
    host: str | None = None,
    error_chars: int = MAX_ERROR_CHARS,
    queue: str = "",
) -> str:
    """The attribute's value: compact JSON. A record shortened to fit says so ("truncated").
    `queue` is the source queue's name in the config (its [queues.NAME], or its URL's last
    segment in the one-queue form)."""
    record: dict[str, Any] = {
        "error": error[:error_chars],
        "type": type_,
        "source_queue": message.queue_url,
        "queue": queue,
        "message_id": message.message_id,
        "sent_at": message.sent_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "receive_count": message.receive_count,
        "failed_at": datetime.now(tz=UTC).isoformat(timespec="milliseconds"),
        "host": host or socket.gethostname(),
    }
    if len(error) > error_chars:
        record["truncated"] = True
    return json.dumps(record, separators=(",", ":"))


def fitting_failure_record(
    message: Message, error: str, type_: str, room: int, host: str | None = None, queue: str = ""
) -> str | None:
    """The fullest record whose attribute (name, type and value) takes at most `room` bytes:
    the error shortened step by step, then the bare minimum; None if not even that fits."""
    overhead = len(FAILURE_ATTRIBUTE) + len("String")
    for chars in SHORTER_ERRORS:
        record = failure_record(message, error, type_, host, chars, queue)
        if overhead + len(record.encode()) <= room:
            return record
    minimal = json.dumps(
        {
            "type": type_,
            "source_queue": message.queue_url,
            "queue": queue,
            "message_id": message.message_id,
            "truncated": True,
        },
        separators=(",", ":"),
    )
    return minimal if overhead + len(minimal.encode()) <= room else None


def missing_failure(message_attributes: dict[str, dict[str, Any]], body: str) -> dict[str, Any]:
    """What the DLQ tools show for a message without poller.failure: why it has none."""
    if len(message_attributes) >= MAX_ATTRIBUTES:
        why = "ten attributes already"
        detail = "the message already carried ten attributes, SQS's limit"
    elif entry_size(body, message_attributes) > MAX_MESSAGE_BYTES - TOO_LARGE_MARGIN:
        why = "too large"
        detail = "the message was too close to SQS's size limit to carry it"
    else:
        why = "not moved by sqs-poller"
        detail = (
            "the queue's redrive policy moved it (a message that crashed its worker, or one "
            "received more than maxReceiveCount times) or another sender put it there"
        )
    return {"type": f"(missing: {why})", "error": f"poller.failure missing: {detail}", "missing": True}


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


def shown_failure(message_attributes: dict[str, dict[str, Any]], body: str) -> dict[str, Any]:
    """The record to show an operator: poller.failure, or why the message has none."""
    return read_failure(message_attributes) or missing_failure(message_attributes, body)


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
