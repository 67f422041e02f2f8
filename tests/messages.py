"""A Message as a handler sees it, for tests that call handlers and libraries directly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from poller.message import Message


def message(body: str, **overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "message_id": "m-1",
        "body": body,
        "receive_count": 1,
        "group_id": None,
        "sent_at": datetime(2026, 1, 1, tzinfo=UTC),
        "attributes": {},
        "message_attributes": {},
        "queue_url": "https://sqs.local/q",
        "receipt_handle": "rh",
    }
    fields.update(overrides)
    return Message(**fields)
