"""`sqs-poller dlq replay`: send dead-lettered messages back, then delete them from the DLQ,
never the other way round. `decide` is the pure routing policy; `Router` counts and sends."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poller.errors import SqsError
from poller.failure import (
    FAILURE_ATTRIBUTE,
    MAX_ATTRIBUTES,
    REPLAYS_ATTRIBUTE,
    error_text,
    read_failure,
    replays,
)
from poller.message import Message
from poller.ops.dlq import Hold, Polling, Receiver, Stop, never, queue_counts, read_export
from poller.sqs import (
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    Sqs,
    entry_size,
    pack_batches,
    send_entry,
    sendable_attributes,
)

MAX_ERRORS_KEPT = 20


@dataclass(frozen=True)
class ReplayOptions:
    to: str | None = None
    default_destination: str | None = None  # the config's queue
    max_messages: int | None = None
    rate: float | None = None  # messages per second
    match_error: re.Pattern[str] | None = None
    match_body: re.Pattern[str] | None = None
    max_replays: int = 3
    dry_run: bool = False

    @property
    def batch_size(self) -> int:
        return MAX_BATCH if not self.rate else max(1, min(MAX_BATCH, int(self.rate)))


@dataclass
class ReplaySummary:
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    would_replay: int = 0  # dry run
    delete_failed: int = 0  # replayed, but also still on the DLQ: a duplicate
    out_of_order: int = 0  # FIFO: replayed ahead of an earlier message of the group that failed
    uncounted: int = 0  # replayed without poller.replays (no room), so --max-replays cannot stop them
    estimate: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    destinations: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)  # dry run: what would happen
    ended: str = ""
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def matched(self) -> int:
        return self.replayed + self.failed + self.would_replay

    @property
    def done(self) -> int:
        return self.matched + self.skipped

    def fail(self, count: int, error: str) -> None:
        self.failed += count
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(error)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "replayed": self.replayed,
            "skipped": self.skipped,
            "failed": self.failed,
        }
        if self.would_replay or not (self.replayed or self.failed):
            out["would_replay"] = self.would_replay
        out.update(
            delete_failed=self.delete_failed,
            out_of_order=self.out_of_order,
            skip_reasons=dict(self.skip_reasons),
            destinations=dict(self.destinations),
            ended=self.ended,
            interrupted=self.interrupted,
            seconds=round(time.monotonic() - self.started, 1),
        )
        if self.uncounted:
            out["uncounted"] = self.uncounted
            out["note"] = (
                f"{self.uncounted} replayed without poller.replays: no room for it (ten attributes "
                "already, or at SQS's 1 MiB limit), so --max-replays cannot stop them"
            )
        if self.errors:
            out["errors"] = self.errors
        return out


def decide(message: Message, options: ReplayOptions) -> tuple[str | None, str | None]:
    """(destination, None) to replay it, or (None, reason) to skip it."""
    failure = read_failure(message.message_attributes)
    if options.match_error and not options.match_error.search(error_text(failure)):
        return None, "match_error"
    if options.match_body and not options.match_body.search(message.body):
        return None, "match_body"
    if replays(message.message_attributes) >= options.max_replays:
        return None, "max_replays"
    destination = options.to or (failure or {}).get("source_queue") or options.default_destination
    if not destination:
        return None, "no_destination"
    return destination, None


def fifo_group(message: Message) -> str | None:
    """The group whose order a replay keeps: a FIFO message's (from a FIFO queue, or exported
    from one: it carries a SequenceNumber). A standard queue's group, a fair queue's tenant,
    orders nothing: None."""
    fifo = message.queue_url.endswith(".fifo") or "SequenceNumber" in message.attributes
    return message.group_id if fifo else None


def replay_attributes(message: Message) -> tuple[dict[str, dict[str, Any]], bool]:
    """Its attributes as they were, without poller.failure, with poller.replays + 1; and whether
    the counter is on: it is left off when it has no room (SQS's ten attributes, or its 1 MiB
    message limit), since a replay that cannot be sent would stay on the DLQ for ever."""
    dropped = (FAILURE_ATTRIBUTE, REPLAYS_ATTRIBUTE)
    sendable = sendable_attributes(message.message_attributes)
    attributes = {k: v for k, v in sendable.items() if k not in dropped}
    count = replays(message.message_attributes) + 1
    counted = {**attributes, REPLAYS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(count)}}
    if len(counted) > MAX_ATTRIBUTES or entry_size(message.body, counted) > MAX_MESSAGE_BYTES:
        return attributes, False
    return counted, True


def replay_entry(message: Message, destination: str, entry_id: str) -> dict[str, Any]:
    """Body and `replay_attributes` as a send entry. The same group (FIFO, or a fair queue's
    tenant); FIFO: a fresh deduplication id, so the dedup window cannot swallow the replay."""
    attributes, _ = replay_attributes(message)
    return send_entry(destination, message.body, attributes, group_id=message.group_id, entry_id=entry_id)


@dataclass
class Sent:
    ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # id -> error
    out_of_order: list[str] = field(default_factory=list)  # FIFO: sent after a failed one of its group
    uncounted: list[str] = field(default_factory=list)  # sent without poller.replays: no room for it


def send_to(sqs: Sqs, destination: str, messages: Sequence[Message]) -> Sent:
    """Send in order, in batches of ≤10 and ≤1 MiB, checking every entry of every response.
    FIFO: once a message of a group fails, the rest of that group is held back (it stays on the
    DLQ, and a FIFO DLQ then hands out no more of that group this run), so the group's order holds.
    Only SQS itself failing one entry yet sending later ones of the same batch can break it; those
    are reported as out of order."""
    by_entry = {str(n): m for n, m in enumerate(messages)}
    entries = [replay_entry(m, destination, n) for n, m in by_entry.items()]
    no_counter = {e["Id"] for e in entries if REPLAYS_ATTRIBUTE not in e.get("MessageAttributes", {})}
    result = Sent()
    broken_groups: set[str] = set()
    fifo = destination.endswith(".fifo")  # a standard queue's groups order nothing
    for batch in pack_batches(entries):
        ready = []
        for entry in batch:
            if fifo and entry.get("MessageGroupId") in broken_groups:
                result.failed[by_entry[entry["Id"]].message_id] = (
                    "held back behind a failed message of its group"
                )
            else:
                ready.append(entry)
        if not ready:
            continue
        try:
            failures = {f.id: f"{f.code}: {f.message}" for f in sqs.send_batch(destination, ready)}
        except SqsError as exc:
            failures = {e["Id"]: str(exc) for e in ready}
        failed_here: set[str] = set()
        for entry in ready:
            message_id = by_entry[entry["Id"]].message_id
            group = entry.get("MessageGroupId") if fifo else None
            if entry["Id"] in failures:
                result.failed[message_id] = failures[entry["Id"]]
                if group is not None:
                    broken_groups.add(group)
                    failed_here.add(group)
            else:
                result.ids.append(message_id)
                if entry["Id"] in no_counter:
                    result.uncounted.append(message_id)
                if group in failed_here:
                    result.out_of_order.append(message_id)
    return result


class Pace:
    """At most `rate` messages a second, on average since the start."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.start = time.monotonic()

    def wait(self, done: int, hold: Hold | None, stop: Stop) -> None:
        if not self.rate:
            return
        delay = self.start + done / self.rate - time.monotonic()
        if delay <= 0:
            return
        if hold is not None:
            hold.sleep(delay, stop)
        else:
            end = time.monotonic() + delay
            while not stop() and time.monotonic() < end:
                time.sleep(min(0.2, end - time.monotonic()))


class Router:
    """Where each message goes, and the counting. FIFO: a group stops at its first message that
    is skipped or fails; later ones of that group are held back ("behind_in_group") so the
    group's order holds."""

    FAILURES = ("no_destination", "destination_is_dlq")

    def __init__(self, sqs: Sqs, options: ReplayOptions, summary: ReplaySummary, dlq_url: str = ""):
        self.sqs, self.options, self.summary, self.dlq_url = sqs, options, summary, dlq_url
        self.blocked_groups: set[str] = set()

    def route(self, messages: Iterable[Message]) -> dict[str, list[Message]]:
        """{destination: messages in order}; every message not routed is counted here."""
        routes: dict[str, list[Message]] = {}
        for message in messages:
            group = fifo_group(message)
            if group is not None and group in self.blocked_groups:
                destination, reason = None, "behind_in_group"
            else:
                destination, reason = decide(message, self.options)
                if destination is not None and destination == self.dlq_url:
                    destination, reason = None, "destination_is_dlq"
            if destination is None:
                self._unrouted(message, str(reason))
            else:
                _plan(self.summary, self.options, message, "replay", destination)
                routes.setdefault(destination, []).append(message)
        return routes

    def send(self, destination: str, messages: list[Message]) -> list[str]:
        """Send (or, on a dry run, count) one destination's messages; returns the ids sent."""
        summary = self.summary
        if self.options.dry_run:
            summary.would_replay += len(messages)
            summary.destinations[destination] += len(messages)
            return []
        sent = send_to(self.sqs, destination, messages)
        summary.replayed += len(sent.ids)
        summary.uncounted += len(sent.uncounted)
        summary.destinations[destination] += len(sent.ids)
        groups = {m.message_id: fifo_group(m) for m in messages}
        for message_id, error in sent.failed.items():
            summary.fail(1, f"{message_id}: {error}")
            if groups[message_id] is not None:
                self.blocked_groups.add(str(groups[message_id]))
        if sent.out_of_order:
            summary.out_of_order += len(sent.out_of_order)
            summary.errors.append(f"sent after a failed message of their FIFO group: {sent.out_of_order}")
        return sent.ids

    def _unrouted(self, message: Message, reason: str) -> None:
        if (group := fifo_group(message)) is not None:
            self.blocked_groups.add(group)
        if reason in self.FAILURES:
            self.summary.fail(1, f"{message.message_id}: {reason} (give --to)")
            _plan(self.summary, self.options, message, "fail", reason)
        else:
            self.summary.skipped += 1
            self.summary.skip_reasons[reason] += 1
            _plan(self.summary, self.options, message, "skip", reason)


def replay_queue(
    sqs: Sqs,
    dlq_url: str,
    options: ReplayOptions,
    polling: Polling = Polling(),
    stop: Stop = never,
    progress: Callable[[ReplaySummary], None] = lambda s: None,
) -> ReplaySummary:
    """Replay from the DLQ: send, then delete only what was sent. Skipped and failed messages stay
    hidden for the rest of the run (so none is received twice) and are released untouched at the end."""
    summary = ReplaySummary(estimate=_estimate(queue_counts(sqs, dlq_url)["visible"], options))
    router = Router(sqs, options, summary, dlq_url)
    hold = Hold(sqs, dlq_url, polling.visibility)
    pace = Pace(options.rate)

    def want() -> int:
        left = options.max_messages - summary.matched if options.max_messages else MAX_BATCH
        return min(options.batch_size, left)

    receiver = Receiver(sqs, dlq_url, hold, polling, want, stop)
    try:
        for batch in receiver:
            for destination, messages in router.route(batch).items():
                sent = router.send(destination, messages)
                hold.extend_due()  # a stalled send must not let the batch's receipts expire
                _delete_sent(hold, sent, summary)
            progress(summary)
            pace.wait(summary.matched, hold, stop)
        summary.ended = receiver.ended
        summary.interrupted = receiver.ended == "stopped"
    finally:
        hold.release_all()
    return summary


def _delete_sent(hold: Hold, sent: list[str], summary: ReplaySummary) -> None:
    _, failed = hold.delete(sent)
    summary.delete_failed += len(failed)  # sent, and still on the DLQ: a duplicate at worst


def _plan(summary: ReplaySummary, options: ReplayOptions, message: Message, action: str, detail: Any) -> None:
    if options.dry_run and len(summary.plan) < 1000:
        failure = read_failure(message.message_attributes) or {}
        summary.plan.append(
            {"id": message.message_id, "action": action, "detail": detail, "type": failure.get("type", "")}
        )


def _estimate(available: int, options: ReplayOptions) -> int:
    return min(available, options.max_messages) if options.max_messages else available


def replay_file(
    sqs: Sqs,
    path: Path,
    options: ReplayOptions,
    stop: Stop = never,
    progress: Callable[[ReplaySummary], None] = lambda s: None,
) -> ReplaySummary:
    """Replay from an export file: the file is the source, so this only sends."""
    messages = read_export(path)
    with open(path, encoding="utf-8") as fh:
        lines = sum(1 for line in fh if line.strip())
    summary = ReplaySummary(estimate=_estimate(lines, options))
    router = Router(sqs, options, summary)
    pace = Pace(options.rate)
    pending: list[Message] = []

    def flush() -> None:
        for destination, batch in router.route(pending).items():
            router.send(destination, batch)
        pending.clear()
        progress(summary)
        pace.wait(summary.matched, None, stop)

    summary.ended = "end_of_file"
    for message in messages:
        if stop():
            summary.ended, summary.interrupted = "stopped", True
            break
        pending.append(message)
        room = options.max_messages - summary.matched if options.max_messages else MAX_BATCH
        if len(pending) >= min(options.batch_size, room):  # so at most --max can match
            flush()
            if options.max_messages and summary.matched >= options.max_messages:
                summary.ended = "limit"
                break
    if pending and not summary.interrupted:
        flush()
    return summary
