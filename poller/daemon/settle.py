"""What happens to a message once its handler is done: a pure decision (`decide`), and the
move to the dead-letter queue that one of the decisions needs (`move_to_dlq`).

`decide(message, error, config)` turns (message, what the handler raised) into one Decision:
delete it, retry it after a delay, or dead-letter it with a reason. The worker executes it, on
a handler thread, never on the housekeeping thread that keeps other messages hidden.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from poller.config import Config
from poller.failure import FAILURE_ATTRIBUTE, MAX_ATTRIBUTES, failure_record
from poller.message import Message, Poison, Retry, Unavailable
from poller.pipeline import Skip
from poller.sqs import Sqs, send_entry, sendable_attributes

DELETE, RETRY, DEAD_LETTER = "delete", "retry", "dead_letter"


class HandlerTimeout(Exception):
    """The handler ran past handler.timeout."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # delete | retry | dead_letter
    outcome: str  # the sqs_poller_messages_total outcome it counts as
    delay: int = 0  # retry: seconds until the message is visible again
    reason: str = ""  # retry / dead_letter: what failed (never the body)
    error_type: str = ""


DELETED = Decision(DELETE, "deleted")


def decide(message: Message, error: BaseException | None, config: Config, rng: Any = random) -> Decision:
    """The outcome for a message whose handler returned (error None) or raised `error`."""
    if error is None:
        return DELETED
    if isinstance(error, Skip):
        return Decision(DELETE, error.outcome, reason=error.reason)
    error_type = type(error).__name__
    if isinstance(error, Poison):
        return Decision(DEAD_LETTER, "dead_lettered", reason=error.reason, error_type=error_type)
    reason = str(error) or error_type
    if isinstance(error, Unavailable):
        # The downstream is down, not the message at fault: never dead-lettered for it.
        delay = max(config.flow.breaker_cooldown, error.retry_after or 0)
        return Decision(RETRY, "retried", round(min(delay, 43200)), reason, error_type)
    if message.receive_count >= config.queue.max_receives:
        return Decision(
            DEAD_LETTER,
            "dead_lettered",
            reason=f"failed {message.receive_count} times (max_receives "
            f"{config.queue.max_receives}); last error: {reason}",
            error_type=error_type,
        )
    if isinstance(error, Retry) and error.delay is not None:
        return Decision(RETRY, "retried", round(error.delay), reason, error_type)
    delay = backoff_seconds(message.receive_count, config.retry.backoff_base, config.retry.backoff_max, rng)
    return Decision(RETRY, "retried", delay, reason, error_type)


def backoff_seconds(receive_count: int, base: float, cap: int, rng: Any = random) -> int:
    """min(cap, base * 2**(receive_count-1)), less up to a quarter of jitter, whole seconds."""
    delay = min(float(cap), base * 2 ** max(receive_count - 1, 0))
    return min(43200, round(delay * rng.uniform(0.75, 1.0)))


def dead_letter_attributes(message: Message, failure: str) -> tuple[dict[str, Any], bool]:
    """The original attributes plus poller.failure; False if SQS's limit of ten left no room."""
    attributes = sendable_attributes(message.message_attributes)
    if FAILURE_ATTRIBUTE not in attributes and len(attributes) >= MAX_ATTRIBUTES:
        return attributes, False
    attributes[FAILURE_ATTRIBUTE] = {"DataType": "String", "StringValue": failure}
    return attributes, True


def move_to_dlq(sqs: Sqs, dlq_url: str, message: Message, reason: str, error_type: str) -> bool:
    """Send the original body and attributes to the DLQ (the caller deletes it after). Returns
    whether the failure attribute fit. FIFO: same group; dedup id from the message id, so a crash
    between send and delete cannot put it in the DLQ twice within SQS's deduplication window."""
    attributes, annotated = dead_letter_attributes(message, failure_record(message, reason, error_type))
    entry = send_entry(
        dlq_url,
        message.body,
        attributes,
        group_id=message.group_id,
        dedup_id=f"dlq-{message.message_id}",
    )
    sqs.send(dlq_url, entry)
    return annotated
