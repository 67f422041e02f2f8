"""An in-memory SQS behind the `poller.sqs.Sqs` interface, for tests of the worker's seams and
for benchmarks of the worker itself (no server in the way). It keeps what a real queue would
tell: deletes, visibility changes and sends, with the thread that made each call; it can refuse
receipts, fail a delete once, and take a set time per receive (a round trip)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from poller.sqs import BatchFailure


class MemorySqs:
    def __init__(self, round_trip: float = 0.0, refill: Callable[[int], list[str]] | None = None):
        self.round_trip = round_trip  # seconds each receive takes
        self.refill = refill  # called with a count when the inbox is empty: bodies to add
        self.inbox: list[dict[str, Any]] = []
        self.received: list[str] = []  # receipt handles handed out, in order
        self.deleted: list[str] = []  # receipt handles, in order
        self.visibility: list[tuple[str, int, str]] = []  # (receipt, seconds, thread)
        self.sent: list[tuple[str, dict[str, Any], str]] = []  # (queue, entry, thread)
        self.refuse_delete: set[str] = set()  # receipt handles SQS no longer knows
        self.refuse_extend: set[str] = set()
        self.fail_delete_once: set[str] = set()  # receipts whose first delete fails transiently
        self.delete_calls = 0
        self.receives = 0
        self.lock = threading.Lock()

    def put(self, body: str, receive_count: int = 1, attributes: dict[str, Any] | None = None) -> str:
        receipt = f"rh-{uuid.uuid4().hex[:12]}"
        message = {
            "MessageId": receipt.replace("rh", "id"),
            "ReceiptHandle": receipt,
            "Body": body,
            "Attributes": {
                "ApproximateReceiveCount": str(receive_count),
                "SentTimestamp": str(int(time.time() * 1000)),
            },
            "MessageAttributes": attributes or {},
        }
        with self.lock:
            self.inbox.append(message)
        return receipt

    def receive(self, url: str, count: int, wait: int, visibility: int | None = None) -> list[dict[str, Any]]:
        if self.round_trip:
            time.sleep(self.round_trip)
        with self.lock:
            self.receives += 1
            refill = self.refill if not self.inbox else None
        if refill is not None:
            for body in refill(count):
                self.put(body)
        with self.lock:
            got, self.inbox = self.inbox[:count], self.inbox[count:]
            self.received += [m["ReceiptHandle"] for m in got]
        if not got and not self.round_trip:
            time.sleep(0.02)
        return got

    def delete_batch(self, url: str, receipts: list[tuple[str, str]]) -> list[BatchFailure]:
        failures = []
        with self.lock:
            self.delete_calls += 1
            for id_, receipt in receipts:
                if receipt in self.refuse_delete:
                    failures.append(BatchFailure(id_, "ReceiptHandleIsInvalid", "gone", True))
                elif receipt in self.fail_delete_once:
                    self.fail_delete_once.discard(receipt)
                    failures.append(BatchFailure(id_, "InternalError", "try again", False))
                else:
                    self.deleted.append(receipt)
        return failures

    def change_visibility_batch(self, url: str, changes: list[tuple[str, str, int]]) -> list[BatchFailure]:
        failures = []
        for id_, receipt, seconds in changes:
            if receipt in self.refuse_extend:
                failures.append(BatchFailure(id_, "ReceiptHandleIsInvalid", "gone", True))
            else:
                self.visibility.append((receipt, seconds, threading.current_thread().name))
        return failures

    def change_visibility(self, url: str, receipt: str, seconds: int) -> None:
        self.visibility.append((receipt, seconds, threading.current_thread().name))

    def send(self, url: str, entry: dict[str, Any]) -> str:
        self.sent.append((url, entry, threading.current_thread().name))
        return uuid.uuid4().hex
