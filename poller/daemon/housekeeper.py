"""The worker's housekeeping thread: batched deletes, the visibility heartbeat, timeouts.

Deletes wait up to DELETE_LINGER to fill a batch of ten; a full batch goes at once, sent by this
thread so the handler thread that filled it is free for the next message. Running messages get
their visibility extended, ten a request, before it runs out, until handler.timeout; then they
count as failed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from poller.errors import EXIT_FAILURE, SqsError
from poller.sqs import MAX_BATCH, BatchFailure, chunks

if TYPE_CHECKING:
    from poller.daemon.worker import InFlight, Worker

DELETE_LINGER = 0.05  # seconds a partial delete batch waits for company
DELETE_GIVE_UP = 900.0  # after this a delete stops being retried: the message may come back
IDLE_TICK = 1.0


@dataclass(slots=True)
class PendingDelete:
    entry: InFlight
    outcome: str | None  # the outcome counted once SQS confirms, None if counted already
    due: float
    first: float
    attempts: int = 0


class Housekeeper:
    def __init__(self, worker: Worker):
        self.worker = worker
        self.sqs = worker.sqs
        self.url = worker.config.queue.url
        self.metrics = worker.metrics
        self.log = worker.log
        visibility = worker.config.queue.visibility_timeout
        self.visibility = visibility
        self.margin = max(1.0, min(10.0, visibility / 3))
        self.stuck_after = max(60.0, float(worker.config.workers.shutdown_grace))
        self._deletes: list[PendingDelete] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
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
            self._deletes.append(PendingDelete(entry, outcome, now + DELETE_LINGER, now))
            count = len(self._deletes)
        if count == 1 or count >= MAX_BATCH:
            # The housekeeper sends it: the handler thread (and its slot) must not wait on SQS.
            self._wake.set()

    def flush_deletes(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if everything:
                batch, self._deletes = self._deletes, []
            else:
                if not self._deletes:
                    return
                if len(self._deletes) < MAX_BATCH and min(p.due for p in self._deletes) > now:
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
        for n, pending in enumerate(group):
            failure = failed.get(str(n))
            if failure is None:
                if pending.outcome:
                    self.metrics.outcome[pending.outcome].inc()
                continue
            if self._gave_up(pending, failure, "delete"):
                continue
            pending.attempts += 1
            pending.due = time.monotonic() + min(10.0, 0.5 * 2**pending.attempts)
            retry.append(pending)
        return retry

    def _gave_up(self, pending: PendingDelete, failure: BatchFailure, action: str) -> bool:
        message = pending.entry.message
        if failure.receipt_invalid:
            self.metrics.receipt_invalid.inc()
            self.log.warning(
                f"{action}_receipt_invalid",
                message_id=message.message_id,
                receive_count=message.receive_count,
                code=failure.code,
                note="the message may be processed twice",
            )
            return True
        if time.monotonic() - pending.first > DELETE_GIVE_UP:
            self.log.error(
                f"{action}_abandoned",
                message_id=message.message_id,
                receive_count=message.receive_count,
                code=failure.code,
                note="the message will be received again",
            )
            return True
        self.log.warning(
            f"{action}_failed",
            message_id=message.message_id,
            code=failure.code,
            error=failure.message[:300],
            attempt=pending.attempts + 1,
        )
        return False

    # --- visibility -------------------------------------------------------------------------

    def set_visibility(self, entry: InFlight, seconds: int) -> None:
        """One message's visibility, for a retry. On failure it comes back at its old time."""
        try:
            self.sqs.change_visibility(self.url, entry.message.receipt_handle, seconds)
        except SqsError as exc:
            if exc.code.split(".")[-1] in ("ReceiptHandleIsInvalid", "MessageNotInflight"):
                self.metrics.receipt_invalid.inc()
            self.log.warning(
                "visibility_change_failed",
                message_id=entry.message.message_id,
                receive_count=entry.message.receive_count,
                error=str(exc),
            )

    def release(self, entries: list[InFlight]) -> None:
        """Make never-started messages visible again at once, untouched."""
        if not entries:
            return
        for group in chunks(entries):
            changes = [(str(n), e.message.receipt_handle, 0) for n, e in enumerate(group)]
            try:
                failures = self.sqs.change_visibility_batch(self.url, changes)
            except SqsError as exc:
                failures = [BatchFailure(c[0], exc.code, str(exc), False) for c in changes]
            failed = {f.id for f in failures}
            released = len(group) - len(failed)
            if released:
                self.metrics.outcome["released"].inc(released)
            if failures:
                self.log.warning(
                    "release_failed",
                    count=len(failures),
                    code=failures[0].code,
                    note="they become visible when their visibility timeout ends",
                )
        for entry in entries:
            entry.settled = True
            self.worker.forget(entry)
        self.log.info("messages_released", count=len(entries))

    def extend_due(self) -> float:
        """Extend what is about to reappear; time out what ran too long. Returns next wake."""
        now = time.monotonic()
        wake = now + IDLE_TICK
        extend: list[InFlight] = []
        for entry in self.worker.held():
            if entry.started and now >= entry.deadline:
                if not entry.settled:
                    self._time_out(entry)
                elif now >= entry.deadline + self.stuck_after:
                    self._recycle_worker(entry)
                continue
            if entry.settled:
                continue
            if entry.visible_until - now <= self.margin:
                extend.append(entry)
            else:
                wake = min(wake, entry.visible_until - self.margin)
            if entry.started:
                wake = min(wake, entry.deadline)
        for group in chunks(extend):
            asked = time.monotonic()
            changes = [(str(n), e.message.receipt_handle, self.visibility) for n, e in enumerate(group)]
            try:
                failures = self.sqs.change_visibility_batch(self.url, changes)
            except SqsError as exc:
                self.log.warning("visibility_extend_failed", count=len(group), error=str(exc))
                continue
            failed = {f.id: f for f in failures}
            for n, entry in enumerate(group):
                failure = failed.get(str(n))
                if failure is None:
                    entry.visible_until = asked + self.visibility
                    wake = min(wake, entry.visible_until - self.margin)
                elif failure.receipt_invalid:
                    self.metrics.receipt_invalid.inc()
                    self.log.warning(
                        "visibility_extend_refused",
                        message_id=entry.message.message_id,
                        code=failure.code,
                        note="the message may be processed twice",
                    )
        return wake

    def _time_out(self, entry: InFlight) -> None:
        if not entry.settle():
            return
        timeout = self.worker.config.handler.timeout
        self.metrics.handler_timeouts.inc()
        self.log.warning(
            "handler_timed_out",
            message_id=entry.message.message_id,
            receive_count=entry.message.receive_count,
            timeout=timeout,
        )
        from poller.daemon.worker import HandlerTimeout

        self.worker.settle_failure(entry, HandlerTimeout(f"handler ran past {timeout}s"))

    def _recycle_worker(self, entry: InFlight) -> None:
        if not self.worker.stopping:
            self.log.error(
                "handler_stuck",
                message_id=entry.message.message_id,
                note="restarting this worker to free its thread",
            )
            self.worker.begin_stop("handler stuck", EXIT_FAILURE)

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
