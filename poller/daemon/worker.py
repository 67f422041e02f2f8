"""One worker process: long-poll, run handlers on a pool of threads, settle every message.

Lifecycle: initialize() -> loop() until stopping -> shutdown(). The main thread receives and
dispatches; `concurrency` handler threads run messages; one housekeeping thread batches
deletes and keeps running messages hidden (see visibility.py).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import tenacity

from poller.config import Config
from poller.daemon.settle import backoff_seconds, move_to_dlq
from poller.errors import EXIT_FAILURE, EXIT_HANDLER, EXIT_OK, HandlerLoadError, SqsError
from poller.handlers.load import LoadedHandler, load_handler
from poller.daemon.log import configure_logging, get_logger
from poller.message import Message, Poison, Retry
from poller.daemon.metrics import Metrics
from poller.sqs import Sqs, client_for
from poller.daemon.housekeeper import Housekeeper

RECEIVE_BACKOFF_MAX = 10.0  # seconds between attempts while SQS cannot be reached
SLOT_LINGER = 0.02  # wait at least this long for a full batch of free slots before a partial receive
LINGER_MAX = 0.25  # and at most this long, however slow receives are


class HandlerTimeout(Exception):
    """The handler ran past handler.timeout."""


@dataclass(eq=False, slots=True)
class InFlight:
    """A message this worker holds, from receive until it is settled."""

    message: Message
    visible_until: float  # monotonic time SQS will make it visible again
    started: float = 0.0
    deadline: float = 0.0
    settled: bool = False
    abandoned: bool = False  # timed out: the handler's late result is ignored
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self) -> bool:
        """Claim the right to settle; exactly one of handler thread or housekeeper gets it."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class Worker:
    def __init__(self, config: Config, index: int = 0, beat: Any = None):
        self.config = config
        self.index = index
        self._beat = beat  # a shared double: the supervisor reads when we last polled
        self.stopping = False
        self.exit_code = EXIT_OK
        self._signalled = False
        self._held: dict[str, InFlight] = {}
        self._held_lock = threading.Condition()
        self._tasks: queue.SimpleQueue[list[InFlight] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._parent = os.getppid()
        self._round_trip = 0.0  # the last receive that returned messages took this long
        self.log = get_logger("poller.daemon.worker")

    # --- lifecycle ------------------------------------------------------------------------

    def initialize(self, handler: LoadedHandler | None = None) -> None:
        cfg = self.config
        self.metrics = Metrics()
        # One attempt a call: our own loops retry (receive backoff, pending deletes), and a
        # call never blocks the loop longer than one long poll plus its timeouts.
        client = client_for(cfg.queue, cfg.workers.concurrency + 2, attempts=1)
        self.sqs = Sqs(client, self.metrics.count_request)
        from poller.crypto.envelope import build_decryptor
        from poller.pipeline.idempotency import build_idempotency_store
        from poller.pipeline.secrets import build_secrets

        self.decryptor = build_decryptor(cfg.crypto)
        self.secrets = build_secrets(cfg.secrets)
        self.idempotency = build_idempotency_store(cfg.idempotency, cfg.handler.timeout)
        options = dict(cfg.handler.options)
        if self.secrets is not None:
            options["secrets"] = self.secrets
        self.handler = handler or load_handler(cfg.handler.target, options)
        self.house = Housekeeper(self)
        for n in range(cfg.workers.concurrency):
            thread = threading.Thread(target=self._run_tasks, name=f"handler-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.house.start()
        self._receive = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, SqsError) and not self.stopping),
            wait=tenacity.wait_exponential(multiplier=0.5, max=RECEIVE_BACKOFF_MAX)
            + tenacity.wait_random(0, 0.5),
            sleep=self._pause,
            before_sleep=self._log_receive_error,
            reraise=True,
        )
        self.beat()
        self.log.info("worker_started", handler=self.handler.name, pid=os.getpid())

    def run(self) -> int:
        while not self.stopping:
            self.loop()
        return self.shutdown()

    def request_stop(self, signum: int = signal.SIGTERM, *_: object) -> None:
        """Signal handler: only record. The loop notices within one poll."""
        self._signalled = True

    # --- the loop -----------------------------------------------------------------------------

    def loop(self) -> None:
        """One iteration: wait for free slots, receive at most that many, dispatch them."""
        self._notice_stop()
        free = self._wait_for_slots()
        if free == 0 or self.stopping:
            return
        cfg = self.config.queue
        try:
            received_at = time.monotonic()
            raw = self._receive(self._poll, cfg.url, free, cfg.wait_time_seconds, cfg.visibility_timeout)
        except SqsError:
            return  # only when stopping: the retrying above waits out everything else
        self.beat()
        if not raw:
            return
        self._round_trip = time.monotonic() - received_at
        visible_until = received_at + cfg.visibility_timeout
        now_ms = time.time() * 1000
        held = [InFlight(Message.from_sqs(m, cfg.url), visible_until) for m in raw]
        self.metrics.received.inc(len(held))
        for entry in held:
            sent = entry.message.attributes.get("SentTimestamp")
            if sent:
                self.metrics.message_age.observe(max(0.0, (now_ms - int(sent)) / 1000))
        with self._held_lock:
            for entry in held:
                self._held[entry.message.receipt_handle] = entry
            self.metrics.in_flight.set(len(self._held))
        self._notice_stop()
        if self.stopping:  # the poll returned after the signal: these never start
            self.house.release(held)
            return
        self._dispatch(held)

    def _poll(self, url: str, count: int, wait: int, visibility: int) -> list[dict[str, Any]]:
        self.beat()
        return self.sqs.receive(url, count, wait, visibility)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            self.beat()
            self._notice_stop()

    def _log_receive_error(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "receive_failed",
            error=str(exc),
            code=getattr(exc, "code", None),
            attempt=state.attempt_number,
            retry_in=round(state.upcoming_sleep, 2),
        )

    def _wait_for_slots(self) -> int:
        """Free slots to receive into: a full batch, or fewer once the linger has passed.

        The linger is two receive round trips (within SLOT_LINGER..LINGER_MAX): a slot held one
        round trip longer than its batch (a DLQ send, a retry's visibility change) still rejoins
        it, instead of splitting the worker's receives into two out-of-step halves for good.
        """
        cfg = self.config
        concurrency = cfg.workers.concurrency
        want = min(cfg.queue.batch_size, concurrency)
        linger_until = None
        with self._held_lock:
            while True:
                free = concurrency - len(self._held)
                if free >= want or self.stopping:
                    return min(free, cfg.queue.batch_size)
                now = time.monotonic()
                if free > 0:
                    linger = max(SLOT_LINGER, min(LINGER_MAX, 2 * self._round_trip))
                    linger_until = linger_until or now + linger
                    if now >= linger_until:
                        return free
                self._held_lock.wait(timeout=(linger_until - now) if linger_until else 1.0)
                self.beat()
                self._notice_stop()

    def _dispatch(self, held: list[InFlight]) -> None:
        if not self.config.queue.is_fifo:
            for entry in held:
                self._tasks.put([entry])
            return
        # FIFO: one task a group keeps the group's order; groups run in parallel.
        groups: dict[str | None, list[InFlight]] = defaultdict(list)
        for entry in held:
            groups[entry.message.group_id].append(entry)
        for group in groups.values():
            self._tasks.put(group)

    # --- handler threads ------------------------------------------------------------------------

    def _run_tasks(self) -> None:
        while (task := self._tasks.get()) is not None:
            for n, entry in enumerate(task):
                if self.stopping:
                    self.house.release(task[n:])
                    break
                if not self.process(entry) and self.config.queue.is_fifo:
                    # The group's order must hold: the rest of it goes back untouched.
                    self.house.release(task[n + 1 :])
                    break

    def process(self, entry: InFlight) -> bool:
        """Run the handler on one message and settle it. True if the group may go on."""
        message = entry.message
        entry.started = time.monotonic()
        entry.deadline = entry.started + self.config.handler.timeout
        error: BaseException | None = None
        try:
            if self.secrets is not None:
                self.secrets.refresh_if_stale()
            plain = self.decryptor.decrypt_message(message) if self.decryptor else message
            if self.idempotency is not None:
                self.idempotency.run_once(plain, self.handler.handle)
            else:
                self.handler.handle(plain)
        except BaseException as exc:  # one catch point: every outcome is settled below
            error = exc
        elapsed = time.monotonic() - entry.started
        self.metrics.handler_seconds.observe(elapsed)
        if not entry.settle():  # the housekeeper timed it out meanwhile
            self.log.warning(
                "handler_finished_after_timeout",
                message_id=message.message_id,
                receive_count=message.receive_count,
                seconds=round(elapsed, 3),
            )
            self.forget(entry)
            return False
        if error is None:
            self.house.delete(entry)
            self.forget(entry)
            return True
        go_on = self.settle_failure(entry, error)
        self.forget(entry)
        return go_on

    def settle_failure(self, entry: InFlight, error: BaseException) -> bool:
        """Retry with backoff, or move to the DLQ. True if the message left the queue."""
        message = entry.message
        cfg = self.config
        if isinstance(error, Poison):
            return self.dead_letter(entry, error.reason, "Poison")
        reason = str(error) or type(error).__name__
        if message.receive_count >= cfg.queue.max_receives:
            return self.dead_letter(
                entry,
                f"failed {message.receive_count} times (max_receives "
                f"{cfg.queue.max_receives}); last error: {reason}",
                type(error).__name__,
            )
        if isinstance(error, Retry) and error.delay is not None:
            delay = round(error.delay)
        else:
            delay = backoff_seconds(message.receive_count, cfg.retry.backoff_base, cfg.retry.backoff_max)
        self.log.info(
            "message_retried",
            message_id=message.message_id,
            receive_count=message.receive_count,
            error_type=type(error).__name__,
            error=reason[:500],
            delay=delay,
        )
        self.house.set_visibility(entry, delay)
        self.metrics.outcome["retried"].inc()
        return False

    def dead_letter(self, entry: InFlight, reason: str, type_: str) -> bool:
        message = entry.message
        try:
            annotated = move_to_dlq(self.sqs, self.config.queue.dlq_url, message, reason, type_)
        except SqsError as exc:
            # Not in the DLQ, so it must stay on the queue: it comes back after a backoff.
            delay = backoff_seconds(
                message.receive_count, self.config.retry.backoff_base, self.config.retry.backoff_max
            )
            self.log.error(
                "dead_letter_failed",
                message_id=message.message_id,
                receive_count=message.receive_count,
                error=str(exc),
                retry_in=delay,
            )
            self.house.set_visibility(entry, delay)
            self.metrics.outcome["retried"].inc()
            return False
        self.house.delete(entry, outcome=None)
        self.metrics.outcome["dead_lettered"].inc()
        self.log.warning(
            "message_dead_lettered",
            message_id=message.message_id,
            receive_count=message.receive_count,
            type=type_,
            reason=reason[:500],
            **({} if annotated else {"note": "ten attributes already: poller.failure omitted"}),
        )
        return True

    def forget(self, entry: InFlight) -> None:
        with self._held_lock:
            self._held.pop(entry.message.receipt_handle, None)
            self.metrics.in_flight.set(len(self._held))
            self._held_lock.notify()

    def held(self) -> list[InFlight]:
        with self._held_lock:
            return list(self._held.values())

    # --- stopping -------------------------------------------------------------------------

    def _notice_stop(self) -> None:
        if self._signalled and not self.stopping:
            self.begin_stop("signal")
        elif os.getppid() != self._parent and not self.stopping:
            self.begin_stop("supervisor gone")

    def begin_stop(self, reason: str, exit_code: int = EXIT_OK) -> None:
        if self.stopping:
            return
        self.exit_code = exit_code
        self.stopping = True
        self._stop_started = time.monotonic()
        with self._held_lock:
            self._held_lock.notify_all()
        self.log.info("worker_stopping", reason=reason, in_flight=len(self._held))

    def shutdown(self) -> int:
        """Release what never started, let running handlers finish within the grace period."""
        started = getattr(self, "_stop_started", time.monotonic())
        grace_until = started + self.config.workers.shutdown_grace
        for _ in self._threads:
            self._tasks.put(None)
        with self._held_lock:
            while self._held and time.monotonic() < grace_until:
                self._held_lock.wait(timeout=min(0.5, grace_until - time.monotonic()))
        leftover = self.held()
        if leftover:
            self.log.warning("shutdown_grace_expired", abandoned=len(leftover))
            self.house.release([e for e in leftover if e.settle()])
        self.house.stop()
        if not leftover:
            try:
                self.handler.close()
            except Exception as exc:
                self.log.warning("handler_close_failed", error=f"{type(exc).__name__}: {exc}")
        self.metrics.in_flight.set(0)
        self.log.info("worker_stopped", exit_code=self.exit_code)
        return self.exit_code

    def beat(self) -> None:
        if self._beat is not None:
            self._beat.value = time.time()


def run_worker(config: Config, index: int, beat: Any) -> None:
    """Entry point of a worker process (multiprocessing target)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor reloads by replacing us
    configure_logging(config.logging.level, config.logging.format, worker=index)
    worker = Worker(config, index, beat)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    try:
        worker.initialize()
    except HandlerLoadError as exc:
        worker.log.error("handler_load_failed", error=str(exc))
        os._exit(EXIT_HANDLER)
    except Exception as exc:
        worker.log.error("worker_start_failed", error=f"{type(exc).__name__}: {exc}")
        os._exit(EXIT_FAILURE)
    code = worker.run()
    # Handler threads that outlived the grace period must not hold the process open.
    os._exit(code)
