"""One worker process: long-poll, run handlers on a pool of threads, settle every message.

Lifecycle: initialize() -> loop() until stopping -> shutdown(). The main thread receives and
dispatches; `concurrency` handler threads run messages through the pipeline and the handler
and settle them (`settle`, after the pure `decide`); one housekeeping thread batches deletes
and keeps running messages hidden (housekeeper.py).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from poller.config import Config
from poller.daemon.housekeeper import Housekeeper
from poller.daemon.inflight import Held, InFlight
from poller.daemon.log import configure_logging, get_logger
from poller.daemon.metrics import Metrics
from poller.daemon.settle import (
    DEAD_LETTER,
    DELETE,
    Decision,
    HandlerTimeout,
    backoff_seconds,
    decide,
    move_to_dlq,
)
from poller.errors import EXIT_FAILURE, EXIT_HANDLER, EXIT_OK, HandlerLoadError, SqsError
from poller.handlers.load import LoadedHandler, load_handler
from poller.message import Message
from poller.pipeline import Pipeline, run_sync
from poller.sqs import Sqs, client_for, receive_retrying

RECEIVE_BACKOFF_MAX = 10.0  # seconds between attempts while SQS cannot be reached
SLOT_LINGER = 0.02  # wait at least this long for a full batch of free slots before a partial receive
LINGER_MAX = 0.25  # and at most this long, however slow receives are

Task = list[InFlight] | Callable[[], None] | None


class Worker:
    def __init__(
        self,
        config: Config,
        index: int = 0,
        beat: Any = None,
        *,
        sqs: Sqs | None = None,
        metrics: Metrics | None = None,
        handler: LoadedHandler | None = None,
        pipeline: Pipeline | None = None,
    ):
        self.config = config
        self.index = index
        self._beat = beat  # a shared double: the supervisor reads when we last polled
        self.sqs = sqs
        self.metrics = metrics
        self.handler = handler
        self.pipeline = pipeline
        self.stopping = False
        self.exit_code = EXIT_OK
        self._signalled = False
        self._tasks: queue.SimpleQueue[Task] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._parent = os.getppid()
        self._round_trip = 0.0  # the last receive that returned messages took this long
        self.log = get_logger("poller.worker")

    # --- lifecycle ------------------------------------------------------------------------

    def initialize(self) -> None:
        cfg = self.config
        if self.metrics is None:
            self.metrics = Metrics()
        if self.sqs is None:
            # One attempt a call: our own loops retry (receive backoff, pending deletes), and a
            # call never blocks the loop longer than one long poll plus its timeouts.
            client = client_for(cfg.queue, cfg.workers.concurrency + 2, attempts=1)
            self.sqs = Sqs(client, self.metrics.count_request)
        secrets = None
        if self.pipeline is None:
            from poller.pipeline.build import build_pipeline

            self.pipeline, secrets = build_pipeline(cfg)
        if self.handler is None:
            options = dict(cfg.handler.options)
            if secrets is not None:
                options["secrets"] = secrets
            self.handler = load_handler(cfg.handler.target, options)
        self.handle = self.handler.handle
        self.held = Held(self.metrics.in_flight.set)
        self.house = Housekeeper(
            self.sqs,
            cfg.queue.url,
            cfg.queue.visibility_timeout,
            self.held,
            self.metrics,
            self.log,
            on_deleted=self._deleted,
            on_timeout=self._time_out,
            on_stuck=self._stuck,
            stuck_after=max(60.0, float(cfg.workers.shutdown_grace)),
        )
        for n in range(cfg.workers.concurrency):
            thread = threading.Thread(target=self._run_tasks, name=f"handler-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.pipeline.start()
        self.house.start()
        self._receive = receive_retrying(
            stop=lambda: self.stopping,
            sleep=self._pause,
            before_sleep=self._log_receive_error,
            backoff_max=RECEIVE_BACKOFF_MAX,
        )
        self.beat()
        self.log.info(
            "worker_started", handler=self.handler.name, pipeline=self.pipeline.names, pid=os.getpid()
        )

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
        held = self._hold(raw, received_at + cfg.visibility_timeout)
        self._notice_stop()
        if self.stopping:  # the poll returned after the signal: these never start
            self.house.release(held)
            return
        self._dispatch(held)

    def _hold(self, raw: list[dict[str, Any]], visible_until: float) -> list[InFlight]:
        url = self.config.queue.url
        held = [InFlight(Message.from_sqs(m, url), visible_until) for m in raw]
        self.metrics.received.inc(len(held))
        now = time.time()
        for entry in held:
            self.metrics.message_age.observe(max(0.0, now - entry.message.sent_at.timestamp()))
        self.held.add(held)
        return held

    def _poll(self, url: str, count: int, wait: int, visibility: int) -> list[dict[str, Any]]:
        self.beat()
        return self.sqs.receive(url, count, wait, visibility)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            self.beat()
            self._notice_stop()

    def _log_receive_error(self, state: Any) -> None:
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
        with self.held.changed:
            while True:
                free = concurrency - len(self.held)
                if free >= want or self.stopping:
                    return min(free, cfg.queue.batch_size)
                now = time.monotonic()
                if free > 0:
                    linger = max(SLOT_LINGER, min(LINGER_MAX, 2 * self._round_trip))
                    linger_until = linger_until or now + linger
                    if now >= linger_until:
                        return free
                self.held.changed.wait(timeout=(linger_until - now) if linger_until else 1.0)
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
            if callable(task):  # settle work handed over by the housekeeper
                task()
                continue
            for n, entry in enumerate(task):
                if self.stopping:
                    self.house.release(task[n:])
                    break
                if not self.process(entry) and self.config.queue.is_fifo:
                    # The group's order must hold: the rest of it goes back untouched.
                    self.house.release(task[n + 1 :])
                    break

    def process(self, entry: InFlight) -> bool:
        """Run the pipeline and the handler on one message and settle it. True if the group
        may go on (the message was deleted or dead-lettered)."""
        entry.start(self.config.handler.timeout)
        error: BaseException | None = None
        try:
            run_sync(self.pipeline, self.handle, entry.message)
        except BaseException as exc:  # one catch point: every outcome is settled below
            error = exc
        elapsed = time.monotonic() - entry.started
        self.metrics.handler_seconds.observe(elapsed)
        if not entry.claim():  # the housekeeper timed it out meanwhile, and settles it
            self.log.warning(
                "handler_finished_after_timeout",
                message_id=entry.message.message_id,
                receive_count=entry.message.receive_count,
                seconds=round(elapsed, 3),
            )
            return False
        return self.settle(entry, decide(entry.message, error, self.config))

    def settle(self, entry: InFlight, decision: Decision) -> bool:
        """Carry out a decision. True if the message left the queue."""
        message = entry.message
        try:
            if decision.action == DELETE:
                self.house.delete(entry, decision.outcome)
                return True
            if decision.action == DEAD_LETTER and self._dead_letter(entry, decision):
                return True
            if decision.action == DEAD_LETTER:  # not in the DLQ, so it stays: back after a backoff
                retry = self.config.retry
                delay = backoff_seconds(message.receive_count, retry.backoff_base, retry.backoff_max)
                decision = Decision("retry", "retried", delay, decision.reason, decision.error_type)
            self.log.info(
                "message_retried",
                message_id=message.message_id,
                receive_count=message.receive_count,
                error_type=decision.error_type,
                error=decision.reason[:500],
                delay=decision.delay,
            )
            self.house.set_visibility(entry, decision.delay)
            self.metrics.outcome["retried"].inc()
            self.pipeline.settled(message, "retried")
            return False
        finally:
            self.held.forget(entry)

    def _dead_letter(self, entry: InFlight, decision: Decision) -> bool:
        message = entry.message
        try:
            annotated = move_to_dlq(
                self.sqs, self.config.queue.dlq_url, message, decision.reason, decision.error_type
            )
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
            **({} if annotated else {"note": "ten attributes already: poller.failure omitted"}),
        )
        return True

    # --- callbacks from the housekeeper -------------------------------------------------------

    def _deleted(self, entry: InFlight, outcome: str | None) -> None:
        if outcome:
            self.metrics.outcome[outcome].inc()
            self.pipeline.settled(entry.message, outcome)

    def _time_out(self, entry: InFlight) -> None:
        """The housekeeper claimed a message that ran too long: settle it on a handler thread."""
        timeout = self.config.handler.timeout
        self.metrics.handler_timeouts.inc()
        self.log.warning(
            "handler_timed_out",
            message_id=entry.message.message_id,
            receive_count=entry.message.receive_count,
            timeout=timeout,
        )
        error = HandlerTimeout(f"handler ran past {timeout}s")
        self._tasks.put(lambda: self.settle(entry, decide(entry.message, error, self.config)))

    def _stuck(self, entry: InFlight) -> None:
        if not self.stopping:
            self.log.error(
                "handler_stuck",
                message_id=entry.message.message_id,
                note="restarting this worker to free its thread",
            )
            self.begin_stop("handler stuck", EXIT_FAILURE)

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
        self.held.wake()
        self.log.info("worker_stopping", reason=reason, in_flight=len(self.held))

    def shutdown(self) -> int:
        """Release what never started, let running handlers finish within the grace period."""
        started = getattr(self, "_stop_started", time.monotonic())
        grace_until = started + self.config.workers.shutdown_grace
        for _ in self._threads:
            self._tasks.put(None)
        with self.held.changed:
            while len(self.held) and time.monotonic() < grace_until:
                self.held.changed.wait(timeout=min(0.5, grace_until - time.monotonic()))
        leftover = self.held.snapshot()
        if leftover:
            self.log.warning("shutdown_grace_expired", abandoned=len(leftover))
            self.house.release(leftover)
        self.house.stop()
        if not leftover:
            self.pipeline.close()
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
