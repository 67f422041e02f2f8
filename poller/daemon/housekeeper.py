"""The worker's housekeeping thread: batched deletes, the visibility heartbeat, timeouts.

Deletes wait up to DELETE_LINGER to fill a batch of ten; a full batch goes at once, sent by this
thread so the handler thread that filled it is free for the next message. Running messages get
their visibility extended, ten a request, before it runs out, until handler.timeout; then they
count as failed, and the failure is handed back (`on_timeout`) to be settled on a handler
thread: this thread never makes a slow call for one message while others wait on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from poller.daemon.heartbeat import IDLE_TICK, Heartbeat
from poller.daemon.inflight import Held, InFlight
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
        visibility: int,
        held: Held,
        metrics: Any,
        log: Any,
        *,
        on_deleted: Callable[[InFlight, str], None],
        on_timeout: Callable[[InFlight], None],
        on_stuck: Callable[[InFlight], None],
        stuck_after: float,
        delete_linger: float = DELETE_LINGER,
    ):
        self.sqs = sqs
        self.url = url
        self.heartbeat = Heartbeat(
            sqs,
            url,
            visibility,
            lambda e, code: self.refused(e.message, code, "visibility_extend_refused"),
            log,
        )
        self.held = held
        self.metrics = metrics
        self.log = log
        self.on_deleted = on_deleted
        self.on_timeout = on_timeout
        self.on_stuck = on_stuck
        self.stuck_after = stuck_after
        self.delete_linger = delete_linger  # longer under a rate limit: messages finish spaced out
        self._deletes: list[PendingDelete] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._deferring = 0  # the thread whose deletes wake this one only when a batch is full
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="housekeeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Flush everything still pending, then end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    # --- deletes --------------------------------------------------------------------------

    def delete(self, entry: InFlight, outcome: str | None = "deleted") -> None:
        now = time.monotonic()
        with self._lock:
            self._deletes.append(PendingDelete(entry, outcome, now + self.delete_linger, now))
            count = len(self._deletes)
        if count >= MAX_BATCH or (count == 1 and self._deferring != threading.get_ident()):
            # The housekeeper sends it: the handler thread (and its slot) must not wait on SQS.
            self._wake.set()

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """The deletes of a batch run on this thread wake the housekeeper once, not for the
        first (to start its linger) and again for the tenth."""
        self._deferring = threading.get_ident()
        try:
            yield
        finally:
            self._deferring = 0
            with self._lock:
                pending = len(self._deletes)
            if pending:
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

    def _extension_refused(self, entry: InFlight, code: str) -> None:
        self.refused(entry.message, code, "visibility_extend_refused")

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

    def extend_due(self) -> float:
        """Time out what ran too long; extend what is about to reappear. Returns next wake."""
        now = time.monotonic()
        running = []
        wake = now + IDLE_TICK
        self.held.count()
        for entry in self.held.snapshot():
            if entry.started and now >= entry.deadline:
                if entry.claim():
                    self.on_timeout(entry)
                elif now >= entry.deadline + self.stuck_after:
                    self.on_stuck(entry)
                continue
            if entry.started:
                wake = min(wake, entry.deadline)
            running.append(entry)
        return min(wake, self.heartbeat.extend(running))

    # --- the thread -------------------------------------------------------------------------

    def _next_wake(self, visibility_wake: float) -> float:
        with self._lock:
            if self._deletes:
                return min(visibility_wake, min(p.due for p in self._deletes))
        return visibility_wake

    def _run(self) -> None:
        wake = time.monotonic()
        while not self._stopping:
            self._wake.wait(max(0.0, self._next_wake(wake) - time.monotonic()))
            self._wake.clear()
            self.flush_deletes()
            wake = self.extend_due()
        for _ in range(5):  # the last deletes: a few tries, then SQS's visibility timeout decides
            self.flush_deletes(everything=True)
            with self._lock:
                if not self._deletes:
                    return
            time.sleep(1)
