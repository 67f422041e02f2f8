"""One worker process: receive, run handlers, settle every message.

Lifecycle: initialize() -> loop() until stopping -> shutdown(). The threads (docs/threads.md):
the main thread starts receives and dispatches their messages (receiver.py; for the batch and
lambda styles it first gathers a batch); `receive-N` threads make the receive calls; handler
threads (or one event loop, for `async def` handlers) run the pipeline and the handler style's
call and settle each message (execute.py, settle.py); the `timer` thread keeps held messages
hidden (through the `extend` thread) and times out handlers (timer.py); the `housekeeper`
batches deletes (housekeeper.py). No thread but the handler threads and the event loop runs
user code.
"""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

from poller.config import Config
from poller.daemon.batches import Batches
from poller.daemon.control import ControlView
from poller.daemon.crashes import Isolation, RunningRecord
from poller.daemon.execute import Calls, EventLoop, Threads, tasks
from poller.daemon.heartbeat import Heartbeat
from poller.daemon.housekeeper import DELETE_LINGER, Housekeeper
from poller.daemon.inflight import Held, InFlight, Running
from poller.daemon.log import get_logger
from poller.daemon.loops import dead_threads
from poller.daemon.metrics import Metrics, observe_all
from poller.daemon.receiver import Receiver
from poller.daemon.recycle import Recycle, request_successor
from poller.daemon.rundir import run_dir
from poller.daemon.settle import Settler
from poller.daemon.timer import Timer
from poller.errors import EXIT_FAILURE, EXIT_OK
from poller.handlers.load import LoadedHandler, load_runner
from poller.message import Message
from poller.pipeline import Pipeline
from poller.pipeline.flow import FlowState, FlowStep, new_flow_state, report_transitions
from poller.sqs import Sqs, worker_client

SLOT_LINGER = 0.02  # wait at least this long for a full batch of free slots before a partial receive
LINGER_MAX = 0.25  # and at most this long, however slow receives are
STOP_CHECK = 1.0  # the main thread's longest wait: it beats and looks at what nothing reports


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
        self._beat = beat  # a shared double: the supervisor reads when we last looked
        self.sqs = sqs
        self.client = client  # a botocore SQS client made before the worker's imports (boot.py)
        self.metrics = metrics
        self.handler = handler
        self.pipeline = pipeline
        self.flow = flow  # the host's shared flow-control state (the supervisor's); else our own
        self.stopping = False
        self.exit_code = EXIT_OK
        self._signalled, self._interrupts, self._forced, self._abandon_poll = False, 0, False, False
        self._stuck = ""  # set by the timer: a handler will not return; a successor is asked for
        self._parent = parent or os.getppid()  # when it is gone, so are we
        self._slots = config.workers.concurrency
        self._next_look = 0.0
        self.log = get_logger("poller.worker")

    # --- lifecycle ------------------------------------------------------------------------

    def initialize(self) -> None:
        cfg, q = self.config, self.config.queue
        self.metrics = self.metrics or Metrics()
        if self.sqs is None:
            self.sqs = Sqs(
                self.client or worker_client(cfg), self.metrics.count_request, self.metrics.count_error
            )
        self.flow = self.flow or new_flow_state(cfg)
        self.flow_step = FlowStep(self.flow, report_transitions(self.metrics, self.log))
        self._gated = bool(self.flow.interval)  # a rate limit asks before every receive
        secrets = None
        if self.pipeline is None:
            from poller.pipeline.build import build_pipeline

            self.pipeline, secrets = build_pipeline(cfg, flow=self.flow_step)
        self.handler, runner = load_runner(cfg, secrets, self.handler)
        self.per_call = runner.per_call
        count_error = self.metrics.count_loop_error
        self.held = Held(self._held_changed)
        self.running = Running()
        self.receiver = Receiver(
            self.sqs, q.url, q.batch_size, q.visibility_timeout, self.held.changed, self.log
        )
        self.house = Housekeeper(
            self.sqs,
            q.url,
            self.held,
            self.metrics,
            self.log,
            on_deleted=lambda entry, outcome: self.pipeline.settled(entry.message, outcome),  # type: ignore[union-attr]
            delete_linger=max(DELETE_LINGER, min(1.0, self.flow.batch * self.flow.interval)),
        )
        self.settler = Settler(cfg, self.sqs, self.house, self.held, self.metrics, self.pipeline, self.log)
        refused = lambda e, code: self.house.refused(e.message, code, "visibility_extend_refused")  # noqa: E731
        self.timer = Timer(
            Heartbeat(self.sqs, q.url, q.visibility_timeout, refused, self.log),
            self.held,
            self.running,
            on_timeout=lambda entry: self.house.submit(self.settler.timed_out(entry)),
            on_stuck=self._report_stuck,
            stuck_after=float(cfg.workers.stuck_margin),
            log=self.log,
            count_error=count_error,
        )
        unbind = None
        if cfg.tracing.enabled:  # a message's trace ids leave the log context with it
            from poller.pipeline.tracing import unbind_trace_ids as unbind
        calls = Calls(
            runner,
            self.pipeline,
            self.settler.settle,
            self.house.release,
            cfg.handler.timeout,
            self.metrics,
            self.log,
            self.held,
            self.running,
            clear_context=unbind,
        )
        if runner.is_async:
            self.executor: Any = EventLoop(calls, cfg.workers.concurrency, q.is_fifo, lambda: self.stopping)
        else:  # the lambda style: one call at a time, as in a Lambda execution environment
            count = 1 if runner.exclusive else cfg.workers.concurrency
            self.executor = Threads(
                count, lambda task: calls.run_task(task, lambda: self.stopping), self.log, count_error
            )
        record = RunningRecord()  # what a crash of this process would be attributed to
        self.isolation = Isolation(self.held, self.executor.submit, self.house.release, record)
        self._record_running = lambda: record.write(self.isolation.running(self.held.snapshot()))
        self.recycle = Recycle(cfg.workers.max_messages, cfg.workers.max_memory_mb, q.batch_size)
        self.batches = Batches(  # batch and lambda styles: a batch being gathered
            cfg.handler.batch_size,
            cfg.handler.batch_window,
            cfg.workers.concurrency,
            self.held.busy,
            self.executor.submit,
        )
        self._threads = [*self.executor.threads, *self.timer.threads, self.house.thread]
        self.control = ControlView(run_dir())  # operator control: pause, quiet (control.py)
        self.executor.start()
        self.pipeline.start()
        self.house.start()
        self.timer.start()
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
        """Signal handler: only record (and wake the main thread's wait: its lock is reentrant).
        SIGQUIT or a second SIGINT force the stop (see shutdown)."""
        self._interrupts += signum == signal.SIGINT
        self._forced = self._forced or signum == signal.SIGQUIT or self._interrupts >= 2
        self._abandon_poll = self._abandon_poll or signum != signal.SIGUSR1  # SIGUSR1: retiring
        self._signalled = True
        if hasattr(self, "held"):
            self.held.wake()

    # --- the loop -----------------------------------------------------------------------------

    def loop(self) -> None:
        """One turn: hold what receives brought, wait for free slots, start receives for them."""
        self._notice_stop()
        self._take(*self.receiver.collect())  # replies back are held before any pause or stop
        if self.stopping:
            return
        if not self._receiving():  # paused by an operator: no receive starts
            return self._idle(STOP_CHECK / 2)
        if self.isolation.waiting and not self.receiver.out:  # crash suspects: one at a time, alone
            return self.isolation.run_next(lambda: self._notice_stop() or self.stopping, self.beat)
        if self.batches and self.batches.due():
            self.batches.flush()
        free = self._wait_for_slots()
        if self.stopping or self.receiver.replied() or free <= 0 or self.isolation.waiting:
            return
        if self.recycle.enabled:
            if why := self.recycle.due():
                return self.begin_stop(f"recycled: {why}")  # finishes what it holds; a successor polls
            free = self.recycle.cap(free)
        if self._gated or not self.flow.closed:
            free, wait = self.flow_step.admit(free)
            if not free:  # the breaker is open, or the rate limit's turn is not due
                return self._idle(wait)
        self.receiver.start(free, self.batches.wait_left(self.config.queue.wait_time_seconds))

    def _take(self, raw: list[dict[str, Any]], sent_at: float) -> None:
        """What the replies collected brought: noted, held, screened and started."""
        if not sent_at:  # no reply was back
            return
        self.beat()
        self.flow_step.received(raw)  # (the breaker's probe is the first message)
        if not raw:
            return
        held = self.settler.screen(self._hold(raw, sent_at), self.isolation.add)
        if self.stopping or self._signalled or not self._receiving():  # these never start
            self.house.release(held)
            self.flow_step.released([e.message.receipt_handle for e in held])  # (a probe among them)
        elif self.per_call:
            self.batches.add(held)
        else:
            self.executor.submit_all(tasks(held, self.config.queue.is_fifo))

    def _hold(self, raw: list[dict[str, Any]], sent_at: float) -> list[InFlight]:
        url, visible_until = self.config.queue.url, sent_at + self.config.queue.visibility_timeout
        held = [InFlight(Message.from_sqs(m, url), visible_until) for m in raw]
        self.metrics.received.inc(len(held))  # type: ignore[union-attr]
        self.recycle.received += len(held)
        now = time.time()
        observe_all(self.metrics.message_age, [max(0.0, now - e.message.sent_at.timestamp()) for e in held])  # type: ignore[union-attr]
        self.held.add(held)
        return held

    def _held_changed(self, count: int) -> None:
        self.metrics.in_flight.set(count)  # type: ignore[union-attr]
        self._record_running()

    def _wait_for_slots(self) -> int:
        """Free slots to receive into, once a receive can start: a full batch, or fewer once the
        linger (two receive round trips, SLOT_LINGER..LINGER_MAX) has passed, so a slot held one
        round trip longer than its batch (a DLQ send, a retry) still rejoins it; while a batch
        gathers, any free slot. Returns early for a reply back, a stop or a batch due."""
        r = self.receiver
        want = 1 if self.batches else min(self.config.queue.batch_size, self._slots)
        linger_until = 0.0
        with self.held.changed:
            while True:
                free = self._slots - self.held.busy() - r.reserved
                now = time.monotonic()
                if self.stopping or self._signalled or self._stuck or r.replied():
                    return free
                if self.batches and self.batches.due():
                    return free
                if self.isolation.waiting:
                    if not r.out:
                        return 0
                elif r.can_start(free, want):
                    return free
                elif not r.out and 0 < free < want and now >= r.ready_at:
                    linger_until = linger_until or now + max(SLOT_LINGER, min(LINGER_MAX, 2 * r.round_trip))
                    if now >= linger_until:
                        return free
                need = want if not r.out else r.batch_size  # slots a forget must leave to matter
                self.held.wake_at = self._slots - need - r.reserved - self.held.overdue
                until = [
                    now + STOP_CHECK,
                    linger_until or math.inf,
                    r.ready_at if r.ready_at > now else math.inf,
                ]
                if self.batches:
                    until.append(self.batches.until)
                self.held.changed.wait(max(0.001, min(until) - now))
                self.beat()
                self._notice_stop()

    def _idle(self, seconds: float) -> None:
        """Wait up to `seconds` (at most STOP_CHECK) for a reply or a stop: paused stays healthy."""
        with self.held.changed:
            if not (self.stopping or self._signalled or self.receiver.replied()):
                self.held.changed.wait(max(0.001, min(seconds, STOP_CHECK)))
        self.beat()

    # --- operator control ------------------------------------------------------------------

    def _receiving(self) -> bool:
        """False while an operator paused this queue or quieted the host (control.py): then what
        is held but not started goes back (visibility 0), and running handlers finish."""
        self.control.refresh()
        if self.control.receiving(self.config.queues[0].name):
            return True
        if self.batches:
            self.house.release(self.batches.take_all())
        if self.isolation.waiting:
            self.isolation.release_waiting()
        return False

    # --- stuck handlers (the timer) and dead threads ------------------------------------------

    def _report_stuck(self, entry: InFlight) -> None:
        """On the timer thread: a handler ran `stuck_margin` past its timeout and still runs. Its
        thread is lost; a successor takes this worker's place, and this one exits."""
        self.metrics.handlers_stuck.inc()  # type: ignore[union-attr]
        self.log.error(
            "handler_stuck",
            message_id=entry.message.message_id,
            receive_count=entry.message.receive_count,
            running_for=round(time.monotonic() - entry.started, 1),
            note="a successor takes this worker's place; this one exits once the rest is done",
        )
        request_successor("handler stuck")
        self._stuck = "handler stuck"
        self.held.wake()

    def _notice_stop(self) -> None:
        if self.stopping:
            return
        if self._signalled:
            self.begin_stop("signal")
        elif self._stuck:
            self.begin_stop(self._stuck, EXIT_FAILURE)
        elif os.getppid() != self._parent:
            self.begin_stop("supervisor gone")
        elif time.monotonic() >= self._next_look:
            self._next_look = time.monotonic() + STOP_CHECK
            if dead := dead_threads(self._threads):  # a loop ended despite its catch
                self.log.error("worker_thread_died", threads=dead, note="replacing this worker")
                self.begin_stop("thread died", EXIT_FAILURE)

    # --- stopping -------------------------------------------------------------------------

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
        late = self.receiver.stop(wait_all=not self._abandon_poll)  # replies back: never started
        if late:
            self.house.release(self._hold(late, time.monotonic()))
        self.house.release(self.batches.take_all())
        self.isolation.release_waiting()
        if isinstance(self.executor, Threads):
            self.executor.stop()  # tasks not yet on a thread go back unstarted (run_task)
        with self.held.changed:
            while len(self.held) and time.monotonic() < grace_until and not self._forced:
                self.held.changed.wait(timeout=min(0.5, grace_until - time.monotonic()))
                self.beat()
        leftover = self.held.snapshot()
        if leftover:
            self.exit_code = EXIT_FAILURE if self._forced else self.exit_code  # work was abandoned
            self.log.warning("shutdown_grace_expired", abandoned=len(leftover), forced=self._forced)
            self.house.release(leftover)
        if isinstance(self.executor, EventLoop):
            self.executor.stop()
        self.timer.stop()
        self.house.stop()
        self.isolation.record.close()
        if not leftover and not self._stuck:
            self.pipeline.close()  # type: ignore[union-attr]
            try:
                self.handler.close()  # type: ignore[union-attr]
            except Exception as exc:
                self.log.warning("handler_close_failed", error=f"{type(exc).__name__}: {exc}")
        self.metrics.in_flight.set(0)  # type: ignore[union-attr]
        self.log.info("worker_stopped", exit_code=self.exit_code)
        return self.exit_code

    def beat(self) -> None:
        if self._beat is not None:
            self._beat.value = time.time()
