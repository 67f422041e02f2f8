"""The worker's housekeeping thread: batched deletes, and the settlement of messages the timer
timed out (`submit`). It makes SQS calls, and may wait on them: nothing time-critical runs here
(visibility extensions and timeouts are the timer's, timer.py).

Deletes wait up to DELETE_LINGER to fill a batch of ten; a full batch goes at once, sent by this
thread so the handler thread that filled it is free for the next message. Releases and retries'
visibility changes are made by the thread that settles the message (`release`,
`set_visibility`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poller.daemon.inflight import Held, InFlight
from poller.daemon.loops import survive
from poller.errors import SqsError
from poller.sqs import MAX_BATCH, BatchFailure, Sqs, chunks

DELETE_LINGER = 0.05  # seconds a partial delete batch waits for company
DELETE_GIVE_UP = 900.0  # after this a delete stops being retried: the message may come back


@dataclass(slots=True)
class PendingDelete:
    entry: InFlight
    outcome: str | None  # the outcome counted once SQS confirms, None if counted already
    due: float
    first: float
    attempts: int = 0


class Housekeeper:
    def __init__(
        self,
        sqs: Sqs,
        url: str,
        held: Held,
        metrics: Any,
        log: Any,
        *,
        on_deleted: Callable[[InFlight, str], None],
        delete_linger: float = DELETE_LINGER,
    ):
        self.sqs = sqs
        self.url = url
        self.held = held
        self.metrics = metrics
        self.log = log
        self.on_deleted = on_deleted
        self._work: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self.delete_linger = delete_linger  # longer under a rate limit: messages finish spaced out
        self._deletes: list[PendingDelete] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="housekeeper", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Flush everything still pending, then end the thread."""
        self._stopping = True
        self._wake.set()
        self.thread.join(timeout=30)

    def release_later(self, entries: list[InFlight], seconds: int = 0) -> None:
        """`release`, by this thread: for a thread that must not wait on SQS (the main thread)."""
        if entries:
            self.submit(lambda: self.release(entries, seconds))

    def submit(self, work: Callable[[], Any]) -> None:
        """Settlement work for this thread (a timed-out message's retry or DLQ move)."""
        self._work.put(work)
        self._wake.set()

    # --- deletes --------------------------------------------------------------------------

    def delete(self, entry: InFlight, outcome: str | None = "deleted") -> None:
        now = time.monotonic()
        with self._lock:
            self._deletes.append(PendingDelete(entry, outcome, now + self.delete_linger, now))
            count = len(self._deletes)
        if count >= MAX_BATCH or count == 1:
            # The housekeeper sends it: the handler thread (and its slot) must not wait on SQS.
            self._wake.set()

    def flush_deletes(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._deletes:
                return
            if not everything and len(self._deletes) < MAX_BATCH and min(p.due for p in self._deletes) > now:
                return
            batch, self._deletes = self._deletes, []
        retry: list[PendingDelete] = []
        for group in chunks(batch):
            retry += self._delete_batch(group)
        if retry:
            with self._lock:
                self._deletes += retry

    def _delete_batch(self, group: list[PendingDelete]) -> list[PendingDelete]:
        receipts = [(str(n), p.entry.message.receipt_handle) for n, p in enumerate(group)]
        try:
            failures = self.sqs.delete_batch(self.url, receipts)
        except SqsError as exc:
            failures = [BatchFailure(str(n), exc.code, str(exc), False) for n in range(len(group))]
        failed = {f.id: f for f in failures}
        retry = []
        counted: dict[str, int] = {}  # outcomes, counted once a batch (a metric write each)
        for n, pending in enumerate(group):
            failure = failed.get(str(n))
            if failure is None:
                if pending.outcome:
                    counted[pending.outcome] = counted.get(pending.outcome, 0) + 1
                    self.on_deleted(pending.entry, pending.outcome)
                continue
            if self._gave_up(pending, failure):
                continue
            pending.attempts += 1
            pending.due = time.monotonic() + min(10.0, 0.5 * 2**pending.attempts)
            retry.append(pending)
        for outcome, count in counted.items():
            self.metrics.outcome[outcome].inc(count)
        return retry

    def _gave_up(self, pending: PendingDelete, failure: BatchFailure) -> bool:
        message = pending.entry.message
        if failure.receipt_invalid:
            self.refused(message, failure.code, "delete_receipt_invalid")
            return True
        if time.monotonic() - pending.first > DELETE_GIVE_UP:
            self.log.error(
                "delete_abandoned",
                message_id=message.message_id,
                receive_count=message.receive_count,
                code=failure.code,
                note="the message will be received again",
            )
            return True
        self.log.warning(
            "delete_failed",
            message_id=message.message_id,
            code=failure.code,
            error=failure.message[:300],
            attempt=pending.attempts + 1,
        )
        return False

    def refused(self, message: Any, code: str, event: str) -> None:
        """SQS no longer knows this receipt: another receive has it, so it may run twice."""
        self.metrics.receipt_invalid.inc()
        self.log.warning(
            event,
            message_id=message.message_id,
            receive_count=message.receive_count,
            code=code,
            note="the message may be processed twice",
        )

    # --- visibility -------------------------------------------------------------------------

    def set_visibility(self, entry: InFlight, seconds: int) -> bool:
        """One message's visibility, for a retry. On failure it comes back at its old time."""
        try:
            self.sqs.change_visibility(self.url, entry.message.receipt_handle, seconds)
            return True
        except SqsError as exc:
            if exc.code.split(".")[-1] in ("ReceiptHandleIsInvalid", "MessageNotInflight"):
                self.refused(entry.message, exc.code, "visibility_change_refused")
            else:
                self.log.warning(
                    "visibility_change_failed",
                    message_id=entry.message.message_id,
                    receive_count=entry.message.receive_count,
                    error=str(exc),
                )
            return False

    def release(self, entries: list[InFlight], seconds: int = 0) -> int:
        """Make messages that never ran visible again (after `seconds`), untouched. Entries
        already claimed by someone else are left alone. Returns how many SQS released."""
        mine = [e for e in entries if e.claim()]
        released = 0
        for group in chunks(mine):
            changes = [(str(n), e.message.receipt_handle, seconds) for n, e in enumerate(group)]
            try:
                failures = self.sqs.change_visibility_batch(self.url, changes)
            except SqsError as exc:
                failures = [BatchFailure(c[0], exc.code, str(exc), False) for c in changes]
            released += len(group) - len(failures)
            if failures:
                self.log.warning(
                    "release_failed",
                    count=len(failures),
                    code=failures[0].code,
                    note="they become visible when their visibility timeout ends",
                )
        if released:
            self.metrics.outcome["released"].inc(released)
        for entry in mine:
            self.held.forget(entry)
        if mine:
            self.log.info("messages_released", count=len(mine), visible_in=seconds)
        return released

    # --- the thread -------------------------------------------------------------------------

    def _next_wake(self) -> float | None:
        """When the next pending delete is due; None (until woken) when none is pending."""
        with self._lock:
            if self._deletes:
                return min(p.due for p in self._deletes)
        return None

    def _run(self) -> None:
        while not self._stopping:
            due = self._next_wake()
            self._wake.wait(None if due is None else max(0.0, due - time.monotonic()))
            self._wake.clear()
            self._turn()
        self._turn()  # settlement handed over before the stop
        for _ in range(5):  # the last deletes: a few tries, then SQS's visibility timeout decides
            survive(lambda: self.flush_deletes(everything=True), self.log, self.metrics.count_loop_error)
            with self._lock:
                if not self._deletes:
                    return
            time.sleep(1)

    def _turn(self) -> None:
        while True:
            try:
                work = self._work.get_nowait()
            except queue.Empty:
                break
            survive(work, self.log, self.metrics.count_loop_error)
        survive(self.flush_deletes, self.log, self.metrics.count_loop_error)
