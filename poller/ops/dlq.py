"""The operator's DLQ tools: stats, peek, export, replay, purge. The CLI is dlq_cli.py.

Every command keeps one rule: a message it receives is either deleted after it is safely elsewhere
(sent to its destination, or synced to the export file) or released untouched (visibility 0) at the
end. Until then it stays hidden (visibility extended), so one run never handles a message twice, and
a kill at any moment leaves every message on the DLQ (visible again after `visibility` seconds) or
at its destination: a duplicate at worst, never a loss.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poller.daemon.settle import FAILURE_ATTRIBUTE, MAX_ATTRIBUTES, REPLAYS_ATTRIBUTE
from poller.errors import ConfigError, SqsError
from poller.ops.send import pack_batches
from poller.sqs import MAX_BATCH, Sqs, chunks, sendable_attributes

COUNTERS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
SYNC_EVERY = 100  # export: records between fsyncs (and, with --delete, between delete rounds)
MAX_ERRORS_KEPT = 20

Stop = Callable[[], bool]


def never() -> bool:
    return False


@dataclass(frozen=True)
class Polling:
    """How the tools receive: long-poll seconds, hiding time, and what "empty" takes."""

    wait: int = 5
    visibility: int = 120
    empty_polls: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.wait <= 20:
            raise ConfigError(f"wait must be within 0..20 seconds, got {self.wait}")
        if not 2 * self.wait + 1 <= self.visibility <= 43200:
            raise ConfigError(
                f"visibility must be within {2 * self.wait + 1}..43200 seconds "
                f"(over twice the long-poll wait), got {self.visibility}"
            )
        if self.empty_polls < 1:
            raise ConfigError(f"empty polls must be at least 1, got {self.empty_polls}")


# --- messages ---------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One message to replay or show, from the DLQ or from an export file."""

    message_id: str
    body: str
    attributes: dict[str, str]  # SQS system attributes
    message_attributes: dict[str, dict[str, Any]]  # sendable form (BinaryValue as bytes)
    receipt: str = ""

    @classmethod
    def from_sqs(cls, raw: dict[str, Any]) -> Candidate:
        return cls(
            message_id=raw["MessageId"],
            body=raw.get("Body", ""),
            attributes=raw.get("Attributes") or {},
            message_attributes=sendable_attributes(raw.get("MessageAttributes") or {}),
            receipt=raw["ReceiptHandle"],
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Candidate:
        return cls(
            message_id=str(record.get("id") or ""),
            body=record["body"],
            attributes=record.get("attributes") or {},
            message_attributes=decode_attributes(record.get("message_attributes") or {}),
        )

    @property
    def group_id(self) -> str | None:
        return self.attributes.get("MessageGroupId")

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", 0))

    @property
    def sent_at(self) -> str:
        sent_ms = self.attributes.get("SentTimestamp")
        if not sent_ms:
            return ""
        return datetime.fromtimestamp(int(sent_ms) / 1000, tz=UTC).isoformat(timespec="seconds")

    @property
    def failure(self) -> dict[str, Any] | None:
        attr = self.message_attributes.get(FAILURE_ATTRIBUTE)
        if not attr or "StringValue" not in attr:
            return None
        try:
            value = json.loads(attr["StringValue"])
        except ValueError:
            return {"error": attr["StringValue"], "type": "unparsable"}
        return value if isinstance(value, dict) else None

    @property
    def replays(self) -> int:
        attr = self.message_attributes.get(REPLAYS_ATTRIBUTE)
        try:
            return int(float(attr["StringValue"])) if attr else 0
        except (KeyError, ValueError):
            return 0

    def record(self) -> dict[str, Any]:
        """The export form: JSON-safe, read back by `from_record`."""
        return {
            "id": self.message_id,
            "body": self.body,
            "attributes": self.attributes,
            "message_attributes": encode_attributes(self.message_attributes),
            "failure": self.failure,
        }


def encode_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, attr in attributes.items():
        value = dict(attr)
        if isinstance(value.get("BinaryValue"), bytes | bytearray):
            value["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        out[name] = value
    return out


def decode_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, attr in attributes.items():
        value = {k: v for k, v in attr.items() if k in ("DataType", "StringValue", "BinaryValue")}
        if isinstance(value.get("BinaryValue"), str):
            value["BinaryValue"] = base64.b64decode(value["BinaryValue"])
        out[name] = value
    return out


def error_text(failure: dict[str, Any] | None) -> str:
    if not failure:
        return ""
    return f"{failure.get('type', '')}: {failure.get('error', '')}"


# --- the queue --------------------------------------------------------------------------------


def queue_counts(sqs: Sqs, url: str) -> dict[str, int]:
    attrs = sqs.attributes(url, list(COUNTERS.values()))
    return {key: int(attrs.get(name, 0)) for key, name in COUNTERS.items()}


class Hold:
    """Messages received and not deleted: kept hidden until `release_all` at the end."""

    def __init__(self, sqs: Sqs, url: str, visibility: int):
        self.sqs = sqs
        self.url = url
        self.visibility = visibility
        self.receipts: dict[str, tuple[str, float]] = {}  # id -> (receipt, hidden until)
        self.lost: set[str] = set()  # seen this run, but its receipt no longer works
        self.release_failures = 0

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.receipts or message_id in self.lost

    def __len__(self) -> int:
        return len(self.receipts)

    def add(self, message_id: str, receipt: str) -> None:
        self.receipts[message_id] = (receipt, time.monotonic() + self.visibility)

    def forget(self, message_id: str) -> None:
        """It was deleted: nothing left to hold or release."""
        self.receipts.pop(message_id, None)

    def lose(self, message_id: str) -> None:
        self.receipts.pop(message_id, None)
        self.lost.add(message_id)

    def extend_due(self) -> None:
        """Extend every message that is past half its hiding time."""
        now = time.monotonic()
        due = [(i, r) for i, (r, until) in self.receipts.items() if until - now < self.visibility / 2]
        for batch in chunks(due):
            try:
                failures = self.sqs.change_visibility_batch(
                    self.url, [(i, r, self.visibility) for i, r in batch]
                )
            except SqsError:
                continue  # tried again next time; if it expires, it is seen again and held again
            failed = {f.id for f in failures}
            for i, r in batch:
                if i in failed:
                    self.lose(i)
                else:
                    self.receipts[i] = (r, now + self.visibility)

    def sleep(self, seconds: float, stop: Stop = never) -> None:
        """Sleep, keeping held messages hidden; wake early on stop."""
        deadline = time.monotonic() + seconds
        while not stop() and (left := deadline - time.monotonic()) > 0:
            self.extend_due()
            time.sleep(min(left, 0.2))

    def release(self, message_ids: Iterable[str]) -> None:
        held = [(i, self.receipts[i][0], 0) for i in message_ids if i in self.receipts]
        for batch in chunks(held):
            try:
                self.release_failures += len(self.sqs.change_visibility_batch(self.url, batch))
            except SqsError:
                self.release_failures += len(batch)  # visible again after the hiding time anyway
        for i, _, _ in held:
            self.receipts.pop(i, None)

    def release_all(self) -> None:
        self.release(list(self.receipts))


class Receiver:
    """New messages from a queue, batch by batch, each added to `hold` before it is yielded.

    It ends on `want()` <= 0, on `stop()`, or when the queue is empty: `polling.empty_polls`
    consecutive long polls bring nothing new AND the queue's visible counter is 0 (never one empty
    poll alone). `ended` says which.
    """

    def __init__(
        self,
        sqs: Sqs,
        url: str,
        hold: Hold,
        polling: Polling,
        want: Callable[[], int],
        stop: Stop = never,
    ):
        self.sqs, self.url, self.hold, self.polling = sqs, url, hold, polling
        self.want, self.stop = want, stop
        self.ended = ""

    def __iter__(self) -> Iterator[list[Candidate]]:
        empty = 0
        while True:
            if self.stop():
                self.ended = "stopped"
                return
            n = min(MAX_BATCH, self.want())
            if n <= 0:
                self.ended = "limit"
                return
            self.hold.extend_due()
            new = []
            for raw in self._receive(n):
                message = Candidate.from_sqs(raw)
                seen = message.message_id in self.hold
                self.hold.add(message.message_id, message.receipt)
                if not seen:
                    new.append(message)
            if new:
                empty = 0
                yield new
                continue
            empty += 1
            if empty < self.polling.empty_polls:
                continue
            if queue_counts(self.sqs, self.url)["visible"] == 0:
                self.ended = "empty"
                return
            if self.url.endswith(".fifo") and len(self.hold):
                # SQS hands out no more of a group while one of its messages is held (skipped or
                # failed): the rest of those groups stays on the DLQ for the next run.
                self.ended = "fifo_groups_held"
                return
            if empty >= 5 * self.polling.empty_polls:
                self.ended = "counters_disagree"  # it says visible, but long polls bring none
                return

    def _receive(self, n: int) -> list[dict[str, Any]]:
        for attempt in range(5):
            try:
                return self.sqs.receive(self.url, n, self.polling.wait, self.polling.visibility)
            except SqsError as exc:
                if not exc.transient or attempt == 4:
                    raise
                self.hold.sleep(2**attempt, self.stop)
                if self.stop():
                    break
        return []


def receive_some(
    sqs: Sqs, url: str, limit: int, polling: Polling, stop: Stop = never
) -> tuple[list[Candidate], Hold]:
    """Up to `limit` messages, still held: the caller releases them (`hold.release_all()`)."""
    hold = Hold(sqs, url, polling.visibility)
    got: list[Candidate] = []
    try:
        for batch in Receiver(sqs, url, hold, polling, lambda: limit - len(got), stop):
            got.extend(batch)
    except BaseException:
        hold.release_all()
        raise
    return got, hold


# --- stats and peek ---------------------------------------------------------------------------


@dataclass
class Stats:
    counts: dict[str, int]
    sampled: int = 0
    types: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)


def stats(sqs: Sqs, url: str, sample: int = 0, polling: Polling = Polling()) -> Stats:
    """Approximate counts; with `sample`, failure types and source queues of up to that many."""
    result = Stats(counts=queue_counts(sqs, url))
    if sample <= 0:
        return result
    messages, hold = receive_some(sqs, url, sample, polling)
    hold.release_all()
    for message in messages:
        failure = message.failure or {}
        result.types[failure.get("type") or "(none)"] += 1
        result.sources[failure.get("source_queue") or "(unknown)"] += 1
    result.sampled = len(messages)
    return result


def peek(sqs: Sqs, url: str, limit: int = 10, polling: Polling = Polling()) -> list[Candidate]:
    """Receive up to `limit` messages and release them at once (SQS has no true peek)."""
    messages, hold = receive_some(sqs, url, limit, polling)
    hold.release_all()
    return messages


# --- export -----------------------------------------------------------------------------------


@dataclass
class ExportSummary:
    exported: int = 0
    deleted: int = 0
    delete_failed: int = 0
    released: int = 0
    ended: str = ""
    interrupted: bool = False


def export(
    sqs: Sqs,
    url: str,
    out: Path,
    delete: bool = False,
    polling: Polling = Polling(),
    stop: Stop = never,
    progress: Callable[[ExportSummary], None] = lambda s: None,
) -> ExportSummary:
    """Stream every message to JSONL. Without `delete` they stay hidden until the end and are then
    released; with `delete` each is deleted only after its line is flushed and fsynced."""
    summary = ExportSummary()
    hold = Hold(sqs, url, polling.visibility)
    unsynced: list[Candidate] = []
    try:
        with open(out, "x", encoding="utf-8") as fh:

            def sync() -> None:
                fh.flush()
                os.fsync(fh.fileno())
                if delete:
                    _delete_synced(sqs, url, hold, unsynced, summary)
                unsynced.clear()

            receiver = Receiver(sqs, url, hold, polling, lambda: MAX_BATCH, stop)
            try:
                for batch in receiver:
                    for message in batch:
                        fh.write(json.dumps(message.record(), separators=(",", ":")) + "\n")
                    unsynced += batch
                    summary.exported += len(batch)
                    if len(unsynced) >= SYNC_EVERY:
                        sync()
                    progress(summary)
            except SqsError as exc:
                if "OverLimit" not in exc.code:
                    raise
                receiver.ended = "in_flight_limit"  # SQS caps hidden messages; export the rest later
            sync()
            summary.ended = receiver.ended
            summary.interrupted = receiver.ended == "stopped"
    except FileExistsError:
        raise ConfigError(f"{out} exists: choose a new file (an export is never overwritten)") from None
    finally:
        summary.released = len(hold)
        hold.release_all()
    return summary


def _delete_synced(
    sqs: Sqs, url: str, hold: Hold, messages: Sequence[Candidate], summary: ExportSummary
) -> None:
    for batch in chunks(messages):
        live = [
            (m.message_id, hold.receipts[m.message_id][0]) for m in batch if m.message_id in hold.receipts
        ]
        failed = {f.id for f in sqs.delete_batch(url, live)} if live else set()
        for message_id, _ in live:
            if message_id in failed:
                summary.delete_failed += 1
                hold.lose(message_id)  # still on the DLQ and in the file: a duplicate, not a loss
            else:
                summary.deleted += 1
                hold.forget(message_id)


# --- replay -----------------------------------------------------------------------------------


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
        if self.errors:
            out["errors"] = self.errors
        return out


def decide(message: Candidate, options: ReplayOptions) -> tuple[str | None, str | None]:
    """(destination, None) to replay it, or (None, reason) to skip it."""
    failure = message.failure
    if options.match_error and not options.match_error.search(error_text(failure)):
        return None, "match_error"
    if options.match_body and not options.match_body.search(message.body):
        return None, "match_body"
    if message.replays >= options.max_replays:
        return None, "max_replays"
    destination = options.to or (failure or {}).get("source_queue") or options.default_destination
    if not destination:
        return None, "no_destination"
    return destination, None


def replay_entry(message: Candidate, destination: str, entry_id: str) -> dict[str, Any]:
    """Body and attributes as they were, without poller.failure, with poller.replays + 1. FIFO:
    the same group and a fresh deduplication id, so the dedup window cannot swallow the replay."""
    dropped = (FAILURE_ATTRIBUTE, REPLAYS_ATTRIBUTE)
    attributes = {k: v for k, v in message.message_attributes.items() if k not in dropped}
    if len(attributes) < MAX_ATTRIBUTES:
        attributes[REPLAYS_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(message.replays + 1)}
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    if attributes:
        entry["MessageAttributes"] = attributes
    if destination.endswith(".fifo"):
        entry["MessageGroupId"] = message.group_id or "default"
        entry["MessageDeduplicationId"] = uuid.uuid4().hex
    return entry


@dataclass
class Sent:
    ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # id -> error
    out_of_order: list[str] = field(default_factory=list)  # FIFO: sent after a failed one of its group


def send_to(sqs: Sqs, destination: str, messages: Sequence[Candidate]) -> Sent:
    """Send in order, in batches of ≤10 and ≤1 MiB, checking every entry of every response.
    FIFO: once a message of a group fails, the rest of that group is held back (it stays on the
    DLQ, and a FIFO DLQ then hands out no more of that group this run), so the group's order holds.
    Only SQS itself failing one entry yet sending later ones of the same batch can break it; those
    are reported as out of order."""
    by_entry = {str(n): m for n, m in enumerate(messages)}
    entries = [replay_entry(m, destination, n) for n, m in by_entry.items()]
    result = Sent()
    broken_groups: set[str] = set()
    for batch in pack_batches(entries):
        ready = []
        for entry in batch:
            if entry.get("MessageGroupId") in broken_groups:
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
            group = entry.get("MessageGroupId")
            if entry["Id"] in failures:
                result.failed[message_id] = failures[entry["Id"]]
                if group is not None:
                    broken_groups.add(group)
                    failed_here.add(group)
            else:
                result.ids.append(message_id)
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

    def route(self, messages: Iterable[Candidate]) -> dict[str, list[Candidate]]:
        """{destination: messages in order}; every message not routed is counted here."""
        routes: dict[str, list[Candidate]] = {}
        for message in messages:
            if message.group_id is not None and message.group_id in self.blocked_groups:
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

    def send(self, destination: str, messages: list[Candidate]) -> list[str]:
        """Send (or, on a dry run, count) one destination's messages; returns the ids sent."""
        summary = self.summary
        if self.options.dry_run:
            summary.would_replay += len(messages)
            summary.destinations[destination] += len(messages)
            return []
        sent = send_to(self.sqs, destination, messages)
        summary.replayed += len(sent.ids)
        summary.destinations[destination] += len(sent.ids)
        groups = {m.message_id: m.group_id for m in messages}
        for message_id, error in sent.failed.items():
            summary.fail(1, f"{message_id}: {error}")
            if groups[message_id] is not None:
                self.blocked_groups.add(str(groups[message_id]))
        if sent.out_of_order:
            summary.out_of_order += len(sent.out_of_order)
            summary.errors.append(f"sent after a failed message of their FIFO group: {sent.out_of_order}")
        return sent.ids

    def _unrouted(self, message: Candidate, reason: str) -> None:
        if message.group_id is not None:
            self.blocked_groups.add(message.group_id)
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
                _delete_sent(sqs, dlq_url, hold, sent, summary)
            progress(summary)
            pace.wait(summary.matched, hold, stop)
        summary.ended = receiver.ended
        summary.interrupted = receiver.ended == "stopped"
    finally:
        hold.release_all()
    return summary


def _delete_sent(sqs: Sqs, dlq_url: str, hold: Hold, sent: list[str], summary: ReplaySummary) -> None:
    for batch in chunks([(i, hold.receipts[i][0]) for i in sent if i in hold.receipts]):
        try:
            failed = {f.id for f in sqs.delete_batch(dlq_url, batch)}
        except SqsError:
            failed = {i for i, _ in batch}
        for message_id, _ in batch:
            if message_id in failed:
                summary.delete_failed += 1
                hold.lose(message_id)  # sent, and still on the DLQ: a duplicate at worst
            else:
                hold.forget(message_id)


def _plan(
    summary: ReplaySummary, options: ReplayOptions, message: Candidate, action: str, detail: Any
) -> None:
    if options.dry_run and len(summary.plan) < 1000:
        failure = message.failure or {}
        summary.plan.append(
            {"id": message.message_id, "action": action, "detail": detail, "type": failure.get("type", "")}
        )


def _estimate(available: int, options: ReplayOptions) -> int:
    return min(available, options.max_messages) if options.max_messages else available


def read_export(path: Path) -> Iterator[Candidate]:
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    with fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("body"), str):
                    raise ValueError('expected an object with a string "body"')
                yield Candidate.from_record(record)
            except (ValueError, TypeError, KeyError) as exc:
                raise ConfigError(f"{path}:{number}: not an export record: {exc}") from None


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
    pending: list[Candidate] = []

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
