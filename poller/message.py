"""The handler contract: the Message a handler receives and the outcomes it can raise."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(slots=True)
class Message:
    """One SQS message as a handler sees it."""

    message_id: str
    body: str
    receive_count: int
    group_id: str | None
    sent_at: datetime
    attributes: dict[str, str]
    message_attributes: dict[str, dict[str, Any]]
    queue_url: str
    receipt_handle: str = field(repr=False, default="")

    @classmethod
    def from_sqs(cls, raw: dict[str, Any], queue_url: str) -> Message:
        attributes = raw.get("Attributes") or {}
        sent_ms = attributes.get("SentTimestamp")
        sent_at = datetime.fromtimestamp(int(sent_ms) / 1000, tz=UTC) if sent_ms else datetime.now(tz=UTC)
        return cls(
            message_id=raw["MessageId"],
            body=raw.get("Body", ""),
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            group_id=attributes.get("MessageGroupId"),
            sent_at=sent_at,
            attributes=attributes,
            message_attributes=raw.get("MessageAttributes") or {},
            queue_url=queue_url,
            receipt_handle=raw["ReceiptHandle"],
        )

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not JSON)."""
        return _json.loads(self.body)


class Retry(Exception):  # noqa: N818 - the contract's name
    """Raise from a handler to retry the message after `delay` seconds (default: the backoff)."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested"):
        super().__init__(reason)
        if delay is not None and not 0 <= delay <= 43200:
            raise ValueError(f"Retry delay must be within 0..43200 seconds, got {delay}")
        self.delay = delay
        self.reason = reason


class Poison(Exception):  # noqa: N818 - the contract's name
    """Raise from a handler to move the message to the dead-letter queue at once."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Unavailable(Exception):  # noqa: N818 - the contract's name
    """Raise from a handler when the downstream is down: the message is not at fault.

    It is retried after the flow-control cooldown (or `retry_after`, when larger) and is never
    dead-lettered for this failure; enough of them open the host's circuit breaker.
    """

    def __init__(self, reason: str = "downstream unavailable", retry_after: float | None = None):
        super().__init__(reason)
        if retry_after is not None and not 0 <= retry_after <= 43200:
            raise ValueError(f"Unavailable retry_after must be within 0..43200 seconds, got {retry_after}")
        self.reason = reason
        self.retry_after = retry_after


class Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a step's ``before``: settle the message as `outcome` without the handler."""

    def __init__(self, outcome: str, reason: str = ""):
        super().__init__(reason or outcome)
        self.outcome = outcome
        self.reason = reason


class Released(Exception):  # noqa: N818 - an outcome, like Retry
    """Not settled: an earlier message of its FIFO group failed in this call. Release it unchanged."""

    def __init__(self, group_id: str | None):
        super().__init__(f"an earlier message of FIFO group {group_id!r} failed in this call")
        self.group_id = group_id
