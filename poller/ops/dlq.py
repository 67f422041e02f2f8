"""The operator's DLQ tools: stats, peek, and what export and replay share (export is in
export.py, replay in replay.py; the CLI in cli/dlq.py).

Every command keeps one rule: a message it receives is either deleted after it is safely elsewhere
(sent to its destination, or synced to the export file) or released untouched (visibility 0) at the
end. Until then it stays hidden (the daemon's visibility heartbeat keeps it so), so one run never
handles a message twice, and a kill at any moment leaves every message on the DLQ (visible again
after `visibility` seconds) or at its destination: a duplicate at worst, never a loss.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poller.daemon.heartbeat import Heartbeat
from poller.daemon.inflight import InFlight
from poller.errors import ConfigError, SqsError
from poller.failure import missing_failure, read_failure, shown_failure
from poller.message import Message
from poller.pipeline.payload import describe_pointer, resolve_body
from poller.sqs import MAX_BATCH, Sqs, chunks, receive_retrying, sendable_attributes

COUNTERS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
RECEIVE_ATTEMPTS = 5

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


# --- messages as export records ------------------------------------------------------------------


def to_record(message: Message) -> dict[str, Any]:
    """The export form: JSON-safe, read back by `from_record`. `id` is the DLQ copy's id; the
    failure record names the original message's id and send time; `payload` describes a body
    kept in S3 (bucket, key, size) when the body is an Extended Client pointer."""
    record = {
        "id": message.message_id,
        "body": message.body,
        "attributes": message.attributes,
        "message_attributes": encode_attributes(sendable_attributes(message.message_attributes)),
        "failure": read_failure(message.message_attributes),
    }
    if record["failure"] is None:  # say why, for `peek --json` and whoever reads the export
        record["failure_missing"] = missing_failure(message.message_attributes, message.body)["error"]
    payload = describe_pointer(message.body, message.message_attributes)
    if payload is not None:
        record["payload"] = payload
    return record


def resolved(message: Message, s3: Any) -> Message:
    """The message with an S3 pointer body replaced by the object's text (`export --resolve`)."""
    body, attributes = resolve_body(message.body, message.message_attributes, s3=s3)
    return dataclasses.replace(message, body=body, message_attributes=attributes)


def from_record(record: dict[str, Any], queue_url: str = "") -> Message:
    """A Message from an export record (no receipt handle: it is not on a queue)."""
    raw = {
        "MessageId": str(record.get("id") or ""),
        "Body": record["body"],
        "Attributes": record.get("attributes") or {},
        "MessageAttributes": decode_attributes(record.get("message_attributes") or {}),
        "ReceiptHandle": "",
    }
    return Message.from_sqs(raw, queue_url)


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


# --- the queue --------------------------------------------------------------------------------


def queue_counts(sqs: Sqs, url: str) -> dict[str, int]:
    attrs = sqs.attributes(url, list(COUNTERS.values()))
    return {key: int(attrs.get(name, 0)) for key, name in COUNTERS.items()}


class Hold:
    """Messages received and not deleted: kept hidden by the heartbeat until `release_all`."""

    def __init__(self, sqs: Sqs, url: str, visibility: int):
        self.sqs = sqs
        self.url = url
        self.entries: dict[str, InFlight] = {}  # message id -> entry
        self.lost: set[str] = set()  # seen this run, but its receipt no longer works
        self.release_failures = 0
        self.heartbeat = Heartbeat(
            sqs, url, visibility, lambda entry, code: self.lose(entry.message.message_id)
        )
        self.visibility = visibility

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.entries or message_id in self.lost

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, message: Message) -> None:
        self.entries[message.message_id] = InFlight(message, time.monotonic() + self.visibility)

    def receipt(self, message_id: str) -> str | None:
        entry = self.entries.get(message_id)
        return entry.message.receipt_handle if entry else None

    def forget(self, message_id: str) -> None:
        """It was deleted: nothing left to hold or release."""
        self.entries.pop(message_id, None)

    def lose(self, message_id: str) -> None:
        self.entries.pop(message_id, None)
        self.lost.add(message_id)

    def extend_due(self) -> None:
        self.heartbeat.extend(list(self.entries.values()))

    def sleep(self, seconds: float, stop: Stop = never) -> None:
        """Sleep, keeping held messages hidden; wake early on stop."""
        deadline = time.monotonic() + seconds
        while not stop() and (left := deadline - time.monotonic()) > 0:
            self.extend_due()
            time.sleep(min(left, 0.2))

    def delete(self, message_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Delete these held messages; returns (deleted, failed). A failed one is lost to this
        run (still on the queue: a duplicate at worst, never a loss)."""
        live = [(i, r) for i in message_ids if (r := self.receipt(i)) is not None]
        deleted, failed = [], []
        for batch in chunks(live):
            try:
                refused = {f.id for f in self.sqs.delete_batch(self.url, batch)}
            except SqsError:
                refused = {i for i, _ in batch}
            for message_id, _ in batch:
                if message_id in refused:
                    failed.append(message_id)
                    self.lose(message_id)
                else:
                    deleted.append(message_id)
                    self.forget(message_id)
        return deleted, failed

    def release(self, message_ids: Iterable[str]) -> None:
        held = [(i, r, 0) for i in message_ids if (r := self.receipt(i)) is not None]
        for batch in chunks(held):
            try:
                self.release_failures += len(self.sqs.change_visibility_batch(self.url, batch))
            except SqsError:
                self.release_failures += len(batch)  # visible again after the hiding time anyway
        for i, _, _ in held:
            self.entries.pop(i, None)

    def release_all(self) -> None:
        self.release(list(self.entries))


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
        self._receive = receive_retrying(
            stop=stop, sleep=lambda s: hold.sleep(s, stop), max_attempts=RECEIVE_ATTEMPTS
        )

    def __iter__(self) -> Iterator[list[Message]]:
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
            for raw in self._receive_batch(n):
                message = Message.from_sqs(raw, self.url)
                seen = message.message_id in self.hold
                self.hold.add(message)
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

    def _receive_batch(self, n: int) -> list[dict[str, Any]]:
        try:
            return self._receive(self.sqs.receive, self.url, n, self.polling.wait, self.polling.visibility)
        except SqsError:
            if self.stop():
                return []
            raise


def receive_some(
    sqs: Sqs, url: str, limit: int, polling: Polling, stop: Stop = never
) -> tuple[list[Message], Hold]:
    """Up to `limit` messages, still held: the caller releases them (`hold.release_all()`)."""
    hold = Hold(sqs, url, polling.visibility)
    got: list[Message] = []
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
    queues: Counter[str] = field(default_factory=Counter)  # poller.failure's queue: the config's name


def stats(sqs: Sqs, url: str, sample: int = 0, polling: Polling = Polling()) -> Stats:
    """Approximate counts; with `sample`, failure types, source queues and queue names of up to
    that many."""
    result = Stats(counts=queue_counts(sqs, url))
    if sample <= 0:
        return result
    messages, hold = receive_some(sqs, url, sample, polling)
    hold.release_all()
    for message in messages:
        failure = shown_failure(message.message_attributes, message.body)
        result.types[failure.get("type") or "(none)"] += 1
        result.sources[failure.get("source_queue") or "(unknown)"] += 1
        if failure.get("queue"):  # records written before queues had names have none
            result.queues[failure["queue"]] += 1
    result.sampled = len(messages)
    return result


def peek(sqs: Sqs, url: str, limit: int = 10, polling: Polling = Polling()) -> list[Message]:
    """Receive up to `limit` messages and release them at once (SQS has no true peek)."""
    messages, hold = receive_some(sqs, url, limit, polling)
    hold.release_all()
    return messages


def read_export(path: Path) -> Iterator[Message]:
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
                yield from_record(record)
            except (ValueError, TypeError, KeyError) as exc:
                raise ConfigError(f"{path}:{number}: not an export record: {exc}") from None
