"""What happens to a message once its handler is done: a pure decision (`decide`), and the
`Settler` that carries it out (delete, retry, move to the dead-letter queue).

`decide(message, error, config)` turns (message, what the handler raised) into one Decision:
delete it, retry it after a delay, or dead-letter it with a reason. The Settler runs on the
thread that ran the handler, or on the housekeeper for a message the timer timed out: never on
the timer, which keeps other messages hidden.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poller.config import Config
from poller.daemon.crashes import any_crashes, crash_reason, crashes
from poller.daemon.inflight import Held, InFlight
from poller.daemon.marks import UNDELIVERABLE, Marks
from poller.errors import SqsError
from poller.failure import FAILURE_ATTRIBUTE, MAX_ATTRIBUTES, fitting_failure_record
from poller.message import Message, Poison, Retry, Skip, Unavailable
from poller.sqs import MAX_MESSAGE_BYTES, Sqs, entry_size, send_entry, sendable_attributes, too_large

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


class TooLargeForDlq(Exception):
    """Not even the bare copy fits the DLQ: only the queue's redrive policy can move it."""


def move_to_dlq(
    sqs: Sqs, dlq_url: str, message: Message, reason: str, error_type: str, queue: str = ""
) -> str:
    """Send the original body and attributes to the DLQ (the caller deletes it after), with the
    fullest poller.failure that fits SQS's size limit. Returns what the copy lacks ("" if
    nothing). If the DLQ refuses it for its size (a smaller MaximumMessageSize), the bare copy is
    tried; if that is refused too, raises TooLargeForDlq. `queue` is the source queue's name, for
    poller.failure. FIFO: same group; dedup id from the message id, so a crash between send and
    delete cannot put it in the DLQ twice within SQS's deduplication window. A standard queue's
    group (a fair queue's tenant) is kept too."""
    bare = sendable_attributes(message.message_attributes)
    bare.pop(FAILURE_ATTRIBUTE, None)
    record = None
    if len(bare) >= MAX_ATTRIBUTES:
        note = "ten attributes already: poller.failure omitted"
    else:
        room = MAX_MESSAGE_BYTES - entry_size(message.body, bare)
        record = fitting_failure_record(message, reason, error_type, room, queue=queue)
        if record is None:
            note = "too large: poller.failure omitted"
        else:
            note = "poller.failure shortened to fit" if '"truncated":true' in record else ""
    try:
        if record is None:
            _send_copy(sqs, dlq_url, message, bare)
            return note
        _send_copy(
            sqs, dlq_url, message, {**bare, FAILURE_ATTRIBUTE: {"DataType": "String", "StringValue": record}}
        )
        return note
    except SqsError as exc:
        if not too_large(exc):
            raise
        if record is None:
            raise TooLargeForDlq(str(exc)) from None
    try:
        _send_copy(sqs, dlq_url, message, bare)
    except SqsError as exc:
        if too_large(exc):
            raise TooLargeForDlq(str(exc)) from None
        raise
    return "the DLQ's size limit left no room: poller.failure omitted"


def _send_copy(sqs: Sqs, dlq_url: str, message: Message, attributes: dict[str, Any]) -> None:
    entry = send_entry(
        dlq_url, message.body, attributes, group_id=message.group_id, dedup_id=f"dlq-{message.message_id}"
    )
    sqs.send(dlq_url, entry)


class Settler:
    """Carries out decisions for one worker: deletes go to the housekeeper's batches, retries
    change the visibility, dead letters are sent (then deleted). Every path forgets the entry."""

    def __init__(
        self,
        config: Config,
        sqs: Sqs,
        house: Any,
        held: Held,
        metrics: Any,
        pipeline: Any,
        log: Any,
        marks: Marks | None = None,
    ):
        self.config = config
        self.marks = marks or Marks()
        self.sqs = sqs
        self.house = house
        self.held = held
        self.metrics = metrics
        self.pipeline = pipeline
        self.log = log

    def timed_out(self, entry: InFlight) -> Callable[[], int | None]:
        """The timer claimed a message that ran past handler.timeout: counted and logged here;
        returns its settling, for the housekeeper to run (its handler thread is still busy)."""
        timeout = self.config.handler.timeout
        self.metrics.handler_timeouts.inc()
        self.log.warning(
            "handler_timed_out",
            message_id=entry.message.message_id,
            receive_count=entry.message.receive_count,
            timeout=timeout,
        )
        error = HandlerTimeout(f"handler ran past {timeout}s")
        return lambda: self.settle(entry, error)

    def settle(self, entry: InFlight, error: BaseException | None) -> int | None:
        """Decide and carry out. None if the message left the queue (its FIFO group may go on),
        else the seconds until it is visible again."""
        return self.execute(entry, decide(entry.message, error, self.config))

    def execute(self, entry: InFlight, decision: Decision) -> int | None:
        message = entry.message
        try:
            if decision.action == DELETE:
                self.house.delete(entry, decision.outcome)
                return None
            if decision.action == DEAD_LETTER:
                if self._dead_letter(entry, decision):
                    return None
                retry = self.config.retry  # not in the DLQ, so it stays: back after a backoff
                delay = backoff_seconds(message.receive_count, retry.backoff_base, retry.backoff_max)
                decision = Decision(RETRY, "retried", delay, decision.reason, decision.error_type)
            self.log.info(
                "message_retried",
                message_id=message.message_id,
                receive_count=message.receive_count,
                error_type=decision.error_type,
                error=decision.reason[:500],
                delay=decision.delay,
            )
            entry.delay = decision.delay
            self.house.set_visibility(entry, decision.delay)
            self.metrics.outcome["retried"].inc()
            self.pipeline.settled(message, "retried")
            return decision.delay
        finally:
            self.held.forget(entry)

    def screen(self, entries: list[InFlight], isolate: Callable[[InFlight], None]) -> list[InFlight]:
        """Those of `entries` to run now. One the DLQ refused before (`TooLargeForDlq`) goes back
        after a backoff without its handler, until the queue's redrive policy moves it. One that
        was running when a worker crashed goes to `isolate` (it runs alone); after two such
        crashes it is dead-lettered without running (see crashes.py)."""
        if all(entry.message.receive_count <= 1 for entry in entries):
            return list(entries)  # first receives: never marked
        # One look at each marks folder a batch: almost always empty, so no look a message.
        undeliverable, crashed = self.marks.any(UNDELIVERABLE), any_crashes()
        if not undeliverable and not crashed:
            return list(entries)
        run = []
        for entry in entries:
            message = entry.message
            if message.receive_count <= 1:  # never received before, so never marked: no file lookups
                run.append(entry)
                continue
            if undeliverable and self.marks.has(UNDELIVERABLE, message.message_id):
                if entry.claim():
                    retry = self.config.retry
                    delay = backoff_seconds(message.receive_count, retry.backoff_base, retry.backoff_max)
                    reason = "left to the queue's redrive policy: the DLQ cannot take it"
                    self._settle_later(
                        entry, Decision(RETRY, "retried", delay, reason, TooLargeForDlq.__name__)
                    )
                continue
            hows = crashes(message.message_id) if crashed else []
            if not hows:
                run.append(entry)
            elif len(hows) >= 2:  # the second crash was alone: this message is the one
                if entry.claim():
                    why = crash_reason(hows)
                    self._settle_later(entry, Decision(DEAD_LETTER, "dead_lettered", 0, why, "WorkerCrash"))
            else:
                isolate(entry)
        return run

    def _settle_later(self, entry: InFlight, decision: Decision) -> None:
        """Screening runs on the worker's main thread, which never waits on SQS: the housekeeper
        carries the decision out."""
        self.house.submit(lambda: self.execute(entry, decision))

    def _dead_letter(self, entry: InFlight, decision: Decision) -> bool:
        message = entry.message
        try:
            queue = self.config.queues[0]
            note = move_to_dlq(
                self.sqs, queue.queue.dlq_url, message, decision.reason, decision.error_type, queue.name
            )
        except TooLargeForDlq as exc:
            if self.marks.add(UNDELIVERABLE, message.message_id):  # said once, by one process
                self.log.error(
                    "dead_letter_impossible",
                    message_id=message.message_id,
                    receive_count=message.receive_count,
                    error=str(exc)[:500],
                    note="the DLQ refuses even the bare copy; the handler will not run on it again "
                    "on this host, and the queue's redrive policy must move it",
                )
            return False
        except SqsError as exc:
            self.log.error(
                "dead_letter_failed",
                message_id=message.message_id,
                receive_count=message.receive_count,
                error=str(exc),
            )
            return False
        self.house.delete(entry, outcome=None)
        self.metrics.outcome["dead_lettered"].inc()
        self.pipeline.settled(message, "dead_lettered")
        self.log.warning(
            "message_dead_lettered",
            message_id=message.message_id,
            receive_count=message.receive_count,
            type=decision.error_type,
            reason=decision.reason[:500],
            **({"note": note} if note else {}),
        )
        return True
