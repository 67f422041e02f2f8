"""What happens to a failed message: the retry backoff, and the move to the dead-letter queue."""

from __future__ import annotations

import json
import random
import socket
from datetime import UTC, datetime
from typing import Any

from poller.message import Message
from poller.sqs import Sqs, sendable_attributes

FAILURE_ATTRIBUTE = "poller.failure"
REPLAYS_ATTRIBUTE = "poller.replays"
MAX_ATTRIBUTES = 10  # SQS's limit of message attributes per message
MAX_ERROR_CHARS = 2000


def backoff_seconds(receive_count: int, base: float, cap: int) -> int:
    """min(cap, base * 2**(receive_count-1)), less up to a quarter of jitter, whole seconds."""
    delay = min(float(cap), base * 2 ** max(receive_count - 1, 0))
    return min(43200, round(delay * random.uniform(0.75, 1.0)))


def failure_record(message: Message, error: str, type_: str, host: str | None = None) -> str:
    return json.dumps(
        {
            "error": error[:MAX_ERROR_CHARS],
            "type": type_,
            "source_queue": message.queue_url,
            "receive_count": message.receive_count,
            "failed_at": datetime.now(tz=UTC).isoformat(timespec="milliseconds"),
            "host": host or socket.gethostname(),
        },
        separators=(",", ":"),
    )


def dead_letter_attributes(message: Message, failure: str) -> tuple[dict[str, Any], bool]:
    """The original attributes plus poller.failure; False if SQS's limit of ten left no room."""
    attributes = sendable_attributes(message.message_attributes)
    if FAILURE_ATTRIBUTE not in attributes and len(attributes) >= MAX_ATTRIBUTES:
        return attributes, False
    attributes[FAILURE_ATTRIBUTE] = {"DataType": "String", "StringValue": failure}
    return attributes, True


def move_to_dlq(sqs: Sqs, dlq_url: str, message: Message, error: str, type_: str) -> bool:
    """Send the message to the DLQ (the caller deletes it after). Returns whether the
    failure attribute fit. FIFO: same group; dedup id from the message id, so a crash between
    send and delete cannot put it in the DLQ twice within SQS's deduplication window."""
    attributes, annotated = dead_letter_attributes(message, failure_record(message, error, type_))
    fifo = dlq_url.endswith(".fifo")
    sqs.send(
        dlq_url,
        message.body,
        attributes,
        group_id=(message.group_id or "default") if fifo else None,
        dedup_id=f"dlq-{message.message_id}" if fifo else None,
    )
    return annotated
