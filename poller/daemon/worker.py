"""One worker process: long-poll, run handlers, settle every message.

Lifecycle: initialize() -> loop() until stopping -> shutdown(). The main thread receives and
dispatches (for the batch and lambda styles it first gathers a batch, up to `batch_size` or
`batch_window`); handler threads (or one event loop, for `async def` handlers) run the pipeline
and the handler style's call and settle each message (execute.py, settle.py); fast handlers run
on the receiving thread instead (inline.py); one housekeeping thread batches deletes and keeps
held messages hidden (housekeeper.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from poller.config import Config
from poller.daemon.batches import Batches
from poller.daemon.crashes import Isolation, RunningRecord
from poller.daemon.execute import Calls, EventLoop, Threads, tasks
from poller.daemon.housekeeper import DELETE_LINGER, Housekeeper
from poller.daemon.inflight import Held, InFlight
from poller.daemon.inline import Inline
from poller.daemon.log import get_logger
from poller.daemon.longpoll import LongPoll
from poller.daemon.metrics import Metrics, observe_all
from poller.daemon.recycle import Recycle
from poller.daemon.settle import Settler
from poller.errors import EXIT_FAILURE, EXIT_OK, SqsError
from poller.handlers.load import LoadedHandler, load_runner
from poller.message import Message
from poller.pipeline import Pipeline
from poller.pipeline.flow import FlowState, FlowStep, new_flow_state, report_transitions
from poller.sqs import Sqs, log_receive_failure, receive_retrying, worker_client
from poller.timeouts import RECEIVE_BACKOFF_MAX

SLOT_LINGER = 0.02  # wait at least this long for a full batch of free slots before a partial receive
LINGER_MAX = 0.25  # and at most this long, however slow receives are
MAX_PARALLEL_RECEIVES = 8  # receives in flight at once while the queue keeps them full


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
        flow: FlowState | None = None,
        client: Any = None,
        parent: int | None = None,
    ):
        self.config = config
        self.index = index
        self._beat = beat  # a shared double: the supervisor reads when we last polled
        self.sqs = sqs
        self.client = client  # a botocore SQS client made before the worker's imports (boot.py)
        self.metrics = metrics
        self.handler = handler
        self.pipeline = pipeline
        self.flow = flow  # the host's shared flow-control state (the supervisor's); else our own
        self.stopping = False
        self.exit_code = EXIT_OK
        self._signalled, self._interrupts, self._forced, self._abandon_poll = False, 0, False, False
        self._parent = parent or os.getppid()  # when it is gone, so are we
        self._round_trip = 0.0  # the last receive that returned messages took this long
        self._busy = False  # the last receive came back full: more is waiting
        self._slots = config.workers.concurrency
        self.log = get_logger("poller.worker")

    # --- lifecycle ------------------------------------------------------------------------

    def initialize(self) -> None:
        cfg = self.config
        if self.metrics is None:
            self.metrics = Metrics()
        if self.sqs is None:
            client = self.client or worker_client(cfg)
            self.sqs = Sqs(client, self.metrics.count_request, self.metrics.count_error)
        self.flow = self.flow or new_flow_state(cfg)
        self.flow_step = FlowStep(self.flow, report_transitions(self.metrics, self.log))
        self._gated = bool(self.flow.interval)  # a rate limit asks before every receive
        secrets = None
        if self.pipeline is None:
            from poller.pipeline.build import build_pipeline

            self.pipeline, secrets = build_pipeline(cfg, flow=self.flow_step)
        self.handler, runner = load_runner(cfg, secrets, self.handler)
        self._taking = threading.Lock()  # a stop's abandoning the poll vs its reply being held
        self.long_poll = LongPoll(self.sqs, self._abandon, on_reply=lambda: self.held.wake())
        self.held = Held(self._held_changed)
        running = RunningRecord()  # what a crash of this process would be attributed to
        self.isolation = Isolation(
            self.held, lambda t: self.executor.submit(t), lambda e: self.house.release(e), running
        )
        self._record_running = lambda: running.write(self.isolation.running(self.held.snapshot()))
        self.recycle = Recycle(cfg.workers.max_messages, cfg.workers.max_memory_mb, cfg.queue.batch_size)
        self.house = Housekeeper(
            self.sqs,
            cfg.queue.url,
            cfg.queue.visibility_timeout,
            self.held,
            self.metrics,
            self.log,
            on_deleted=lambda entry, outcome: self.pipeline.settled(entry.message, outcome),
            on_timeout=lambda entry: self.executor.submit(self.settler.timed_out(entry)),
            on_stuck=self._stuck,
            stuck_after=max(60.0, float(cfg.workers.shutdown_grace)),
            delete_linger=max(DELETE_LINGER, min(1.0, self.flow.batch * self.flow.interval)),
        )
        self.settler = Settler(cfg, self.sqs, self.house, self.held, self.metrics, self.pipeline, self.log)
        unbind = None
        if cfg.tracing.enabled:  # a message's trace ids leave the log context with it
            from poller.pipeline.tracing import unbind_trace_ids as unbind
        self.calls = Calls(
            runner,
            self.pipeline,
            self.settler.settle,
            self.house.release,
            cfg.handler.timeout,
            self.metrics,
            self.log,
            clear_context=unbind,
        )
        self.per_call = runner.per_call
        self.batches = Batches(  # batch and lambda styles: a batch being gathered
            cfg.handler.batch_size,
            cfg.handler.batch_window,
            cfg.workers.concurrency,
            lambda: len(self.held),
            lambda batch: self.executor.submit(batch),
        )
        self.inline, self._chains = None, False
        if runner.is_async:
            self.executor: Any = EventLoop(
                self.calls, cfg.workers.concurrency, cfg.queue.is_fifo, lambda: self.stopping
            )
        else:
            self.executor = Threads(
                cfg.workers.concurrency, lambda task: self.calls.run_task(task, lambda: self.stopping)
            )
            if not self.per_call and not cfg.queue.is_fifo:  # fast handlers on the receiving thread
                self.inline = Inline(
                    self.calls,
                    lambda rest: self.executor.submit_all(tasks(rest, False)),
                    self.house.release,
                    lambda: self.stopping or self._signalled,  # a signal now, not once noticed
                    lambda timings: observe_all(self.metrics.handler_seconds, timings),
                )
                self._chains = not (self._gated or self.recycle.enabled or self._slots > cfg.queue.batch_size)
        self.executor.start()
        self.pipeline.start()
        self.house.start()
        self._receive = receive_retrying(
            stop=lambda: self.stopping,
            sleep=self._pause,
            before_sleep=log_receive_failure(self.log),
            backoff_max=RECEIVE_BACKOFF_MAX,
        )
        self.beat()
        self.log.info(
            "worker_started",
            handler=self.handler.name,
            style=runner.style,
            is_async=runner.is_async,
            pipeline=self.pipeline.names,
            pid=os.getpid(),
        )

    def run(self) -> int:
        while not self.stopping:
            self.loop()
        return self.shutdown()

    def request_stop(self, signum: int = signal.SIGTERM, *_: object) -> None:
        """Signal handler: only record. SIGQUIT or a second SIGINT force the stop (see shutdown)."""
        self._interrupts += signum == signal.SIGINT
        self._forced = self._forced or signum == signal.SIGQUIT or self._interrupts >= 2
        self._abandon_poll = self._abandon_poll or signum != signal.SIGUSR1  # SIGUSR1: retiring
        self._signalled = True
        if hasattr(self, "long_poll"):  # a receive being waited for looks at the stop now
            self.long_poll.wake()

    # --- the loop -----------------------------------------------------------------------------

    def loop(self) -> None:
        """One iteration: wait for free slots, receive at most that many, dispatch them."""
        self._notice_stop()
        if self.isolation.waiting and not self.long_poll.out:  # crash suspects: one at a time, alone
            return self.isolation.run_next(lambda: self._notice_stop() or self.stopping, self.beat)
        if self.batches and self.batches.due():
            self.batches.flush()
        free = self.recycle.cap(self._wait_for_slots())
        if self.recycle.enabled and (why := self.recycle.due()):
            self.begin_stop(f"recycled: {why}")  # finishes what it holds; a successor polls
        if free and not self.stopping and (self._gated or not self.flow.closed):
            free = self.flow_step.wait_for_turn(free, self._pause, lambda: self.stopping)
        out = self.long_poll.out
        if self.stopping or not (free or out):
            return
        cfg = self.config.queue
        wait = self.batches.wait_left(cfg.wait_time_seconds)
        # While receives come back full, free slots fill with overlapping receives (longpoll.py).
        overlap = self._busy and not self.isolation.waiting and self._slots > cfg.batch_size
        calls = min(free // cfg.batch_size, MAX_PARALLEL_RECEIVES - out) if overlap else 0
        try:
            received_at = time.monotonic()
            if calls or out:
                raw, full, received_at = self._receive(self._poll_many, calls, wait)
            elif self.inline is not None and self.inline.fast() and not self.isolation.waiting:
                ask = min(free, cfg.batch_size)
                self._receive(self._poll_inline, cfg.url, ask, wait, cfg.visibility_timeout, received_at)
                raw, full = [], None  # (the receiving thread took what came, and noted it)
            else:
                ask = min(free, cfg.batch_size)
                raw = self._receive(self._poll, cfg.url, ask, wait, cfg.visibility_timeout)
                full = len(raw) >= ask
                self._round_trip = time.monotonic() - received_at if raw else self._round_trip
        except SqsError:
            return  # only when stopping: the retrying above waits out everything else
        self.beat()
        self._busy = self._busy if full is None else full
        if full is not None or raw:  # a reply came (none may have, of the receives out)
            self._take(raw, received_at)

    def _take(self, raw: list[dict[str, Any]], received_at: float, inline: bool = False) -> None:
        """What a receive brought: noted, held, screened and started, on the main thread or, for
        fast handlers (`inline`), on the receiving thread while the main thread waits."""
        self.flow_step.received(raw)  # (the breaker's probe is the first message)
        if not raw:
            return
        if not inline:
            self._notice_stop()
        with self._taking:
            visible_until = received_at + self.config.queue.visibility_timeout
            held = self.settler.screen(self._hold(raw, visible_until), self.isolation.add)
            stopped = self.stopping or self._signalled
        if stopped:  # the poll returned after the signal: these never start
            self.house.release(held)
        elif inline and self.inline is not None:
            with self.house.deferring():  # one wake of the housekeeper for the batch's deletes
                self.inline.run(held)
        elif self.per_call:
            self.batches.add(held)
        else:
            self.executor.submit_all(tasks(held, self.config.queue.is_fifo))

    def _abandon(self) -> bool:
        """A receive being waited for is abandoned once stopping with nothing held (`_take`)."""
        self._notice_stop()
        with self._taking:
            return self.stopping and self._abandon_poll and not len(self.held)

    def _held_changed(self, count: int) -> None:
        self.metrics.in_flight.set(count)
        self._record_running()
        if not count and self.stopping:  # a stop abandons the poll once nothing is held
            self.long_poll.wake()

    def _hold(self, raw: list[dict[str, Any]], visible_until: float) -> list[InFlight]:
        url = self.config.queue.url
        held = [InFlight(Message.from_sqs(m, url), visible_until) for m in raw]
        self.metrics.received.inc(len(held))
        self.recycle.received += len(held)
        now = time.time()
        observe_all(self.metrics.message_age, [max(0.0, now - e.message.sent_at.timestamp()) for e in held])
        self.held.add(held)
        return held

    def _poll(self, url: str, count: int, wait: int, visibility: int) -> list[dict[str, Any]]:
        self.beat()
        return self.long_poll.receive(url, count, wait, visibility)

    def _poll_inline(self, url: str, count: int, wait: int, visibility: int, received_at: float) -> None:
        """A receive whose messages run on the receiving thread, which then receives again
        itself while nothing needs the main thread (`_go_on`); the main thread waits, ready to act
        on a stop or a stall (inline.py)."""
        self.beat()
        chain = self._chain = object()  # ended when the main thread stops waiting (a stall, a stop)

        def take(raw: list[dict[str, Any]], at: float) -> bool:
            self._take(raw, at, inline=True)
            if self._chain is not chain:  # the main thread went on (a stall): never two loops
                return False  # (a stalled handler's time also makes the pace slow: `_go_on` False)
            self._busy = len(raw) >= count
            self._round_trip = time.monotonic() - at if raw else self._round_trip
            self.beat()
            return bool(raw) and self._go_on()  # (an idle queue's empty reply: back to main)

        def loop(raw: list[dict[str, Any]]) -> None:
            again = lambda: self.long_poll.receive_here(url, count, wait, visibility)  # noqa: E731
            Inline.receive_loop(raw, take, again, received_at)

        try:
            self.long_poll.receive(url, count, wait, visibility, then=loop, stalled=self.inline.take_stalled)  # type: ignore[union-attr]
        finally:
            self._chain = None

    def _go_on(self) -> bool:
        """May the receiving thread receive again? While a loop turn would do just that: nothing
        to consult (`_chains`: no rate limit, recycling or overlapping receives), no stop, no
        crash suspect, nothing held, breaker closed, handlers still fast."""
        held_up = self.stopping or self._signalled or self.isolation.waiting or len(self.held)
        return self._chains and not held_up and self.flow.closed and self.inline.fast()  # type: ignore[union-attr]

    def _poll_many(self, calls: int, wait: int) -> tuple[list[dict[str, Any]], bool | None, float]:
        """`calls` more full-batch receives, and what those out brought (LongPoll.receive_many)."""
        self.beat()
        q = self.config.queue
        return self.long_poll.receive_many(calls, q.url, q.batch_size, wait, q.visibility_timeout)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            self.beat()
            self._notice_stop()

    def _wait_for_slots(self) -> int:
        """Free slots to receive into: a full batch, or fewer once the linger (two receive round
        trips, SLOT_LINGER..LINGER_MAX) has passed, so a slot held one round trip longer than
        its batch (a DLQ send, a retry) still rejoins it; while a batch gathers, any free slot."""
        want = 1 if self.batches else min(self.config.queue.batch_size, self._slots)
        linger_until = None
        with self.held.changed:
            while True:
                reserved = self.long_poll.reserved  # slots the receives out may fill
                self.held.wake_at = self._slots - want - reserved
                free = self._slots - len(self.held) - reserved
                due = self.stopping or self.long_poll.replied() or (self.batches and self.batches.due())
                if free >= want or due:
                    return free
                now = time.monotonic()
                if free > 0:
                    linger = max(SLOT_LINGER, min(LINGER_MAX, 2 * self._round_trip))
                    linger_until = linger_until or now + linger
                    if now >= linger_until:
                        return free
                self.held.changed.wait(timeout=(linger_until - now) if linger_until else 1.0)
                self.beat()
                self._notice_stop()

    # --- a callback from the housekeeper ------------------------------------------------------

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
        self.long_poll.abandon(self.config.queue.url)
        self.house.release(self.batches.take_all())
        self.isolation.release_waiting()
        if isinstance(self.executor, Threads):
            self.executor.stop()
        with self.held.changed:
            while len(self.held) and time.monotonic() < grace_until and not self._forced:
                self.held.changed.wait(timeout=min(0.5, grace_until - time.monotonic()))
        leftover = self.held.snapshot()
        if leftover:
            self.exit_code = EXIT_FAILURE if self._forced else self.exit_code  # work was abandoned
            self.log.warning("shutdown_grace_expired", abandoned=len(leftover), forced=self._forced)
            self.house.release(leftover)
        if isinstance(self.executor, EventLoop):
            self.executor.stop()
        self.house.stop()
        self.isolation.record.close()
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
