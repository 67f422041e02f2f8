"""One worker process: receive from every queue, run handlers, settle every message.

Lifecycle: initialize() -> loop() until stopping -> shutdown(). The main thread shares the free
slots among the queues (lanes.py), starts receives and dispatches their messages (receiver.py);
handler threads or one event loop run handlers and settle (execute.py, settle.py); the timer
keeps held messages hidden and times out handlers (timer.py); a housekeeper a queue batches
deletes. No thread but the handler threads and the event loop runs user code (docs/threads.md).
"""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

from poller.config import Config
from poller.daemon.control import ControlView
from poller.daemon.crashes import Isolation, RunningRecord
from poller.daemon.execute import EventLoop, Threads, assign_executors, tasks
from poller.daemon.inflight import Held, InFlight, Running
from poller.daemon.lanes import IDLE, Lane, build_lane, lane_config, plan
from poller.daemon.log import get_logger
from poller.daemon.loops import dead_threads
from poller.daemon.metrics import Metrics, observe_all
from poller.daemon.recycle import Recycle, request_successor
from poller.daemon.rundir import run_dir
from poller.daemon.timer import Timer
from poller.errors import EXIT_FAILURE, EXIT_OK
from poller.handlers.load import LoadedHandler
from poller.message import Message
from poller.pipeline import Pipeline
from poller.pipeline.flow import FlowState, new_flow_state
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
        flow: FlowState | dict[str, FlowState] | None = None,
        client: Any = None,
        parent: int | None = None,
    ):
        self.config = config
        self.index = index
        self._beat = beat  # a shared double: the supervisor reads when we last looked
        self.sqs = sqs  # a test's, for every queue
        self.client = client  # a botocore SQS client made before the worker's imports (boot.py)
        self.metrics = metrics
        self.handler = handler  # a test's, for the first queue
        self.pipeline = pipeline
        first = config.queues[0].name
        self.flows = flow if isinstance(flow, dict) else ({first: flow} if flow is not None else {})
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
        cfg = self.config
        self.metrics = self.metrics or Metrics()
        client = None if self.sqs is not None else (self.client or worker_client(cfg))
        self.held = Held(self._held_changed)
        self.running = Running()
        self.lanes: list[Lane] = []
        secrets = None
        for n, spec in enumerate(cfg.queues):
            metrics = self.metrics.for_queue(spec.name)
            sqs = self.sqs or Sqs(client, metrics.count_request, metrics.count_error, wire=True)
            flow = self.flows.get(spec.name) or new_flow_state(lane_config(cfg, spec))
            lane, secrets = build_lane(
                n, spec, cfg, held=self.held, running=self.running, metrics=metrics,
                log=self.log.bind(queue=spec.name) if len(cfg.queues) > 1 else self.log, sqs=sqs, flow=flow,
                pipeline=self.pipeline if n == 0 else None, handler=self.handler if n == 0 else None,
                secrets=secrets,
            )  # fmt: skip
            self.lanes.append(lane)
        self._by_url = {lane.url: lane for lane in self.lanes}
        count_error = self.metrics.count_loop_error
        self.timer = Timer(
            {lane.url: lane.heartbeat for lane in self.lanes},
            self.held,
            self.running,
            on_timeout=lambda e: (lane := self._lane(e)).house.submit(lane.settler.timed_out(e)),
            on_stuck=self._report_stuck,
            stuck_after=float(cfg.workers.stuck_margin),
            log=self.log,
            count_error=count_error,
        )
        self._executors = assign_executors(
            self.lanes, self._slots, lambda: self.stopping, self.log, count_error
        )
        record = RunningRecord()  # what a crash of this process would be attributed to
        self.isolation = Isolation(
            self.held, lambda entries: self._submit(self._lane(entries[0]), entries), self._release, record
        )
        self._record_running = lambda: record.write(self.isolation.running(self.held.snapshot()))
        self.recycle = Recycle(cfg.workers.max_messages, cfg.workers.max_memory_mb, cfg.queue.batch_size)
        self.control = ControlView(run_dir())  # operator control: pause, quiet (control.py)
        self._threads = [*self.timer.threads]
        for executor in self._executors:
            executor.start()
            self._threads += executor.threads
        for lane in self.lanes:
            lane.pipeline.start()
            lane.house.start()
            self._threads.append(lane.house.thread)
        self.timer.start()
        self.beat()
        for lane in self.lanes:
            lane.log.info(
                "worker_started",
                handler=lane.handler.name,
                style=lane.runner.style,
                is_async=lane.runner.is_async,
                pipeline=lane.pipeline.names,
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

    @property
    def receiver(self) -> Any:  # the first queue's (tests and one-queue callers)
        return self.lanes[0].receiver

    @property
    def flow(self) -> FlowState:
        return self.lanes[0].flow

    # --- the loop -----------------------------------------------------------------------------

    def loop(self) -> None:
        """One turn: hold what receives brought, wait for free slots, start receives for them."""
        self._notice_stop()
        self.control.refresh()  # an operator's pause or quiet (control.py): a look twice a second
        for lane in self.lanes:  # replies back are held before any pause or stop
            self._take(lane, *lane.receiver.collect())
        self._release_paused()
        if self.stopping:
            return
        if self.isolation.waiting and not self._out():  # crash suspects: one at a time, alone
            return self.isolation.run_next(lambda: self._notice_stop() or self.stopping, self.beat)
        for lane in self.lanes:
            if lane.batches and lane.batches.due():
                lane.batches.flush()
        starts = self._wait_for_starts()
        if self.stopping or not starts:
            return
        if self.recycle.enabled and (why := self.recycle.due()):
            return self.begin_stop(f"recycled: {why}")  # finishes what it holds; a successor polls
        for index, ask in starts:
            lane = self.lanes[index]
            if self.recycle.enabled and not (ask := self.recycle.cap(ask)):
                continue
            if lane.gated or not lane.flow.closed:
                ask, wait = lane.flow_step.admit(ask)
                if not ask:  # its breaker is open, or its rate limit's turn is not due
                    lane.gate_until = time.monotonic() + wait
                    continue
            lane.receiver.send(ask, lane.batches.wait_left(lane.spec.queue.wait_time_seconds))
            lane.served += ask / lane.spec.weight

    def _take(self, lane: Lane, raw: list[dict[str, Any]], sent_at: float) -> None:
        """What one queue's collected replies brought: noted, held, screened and started."""
        if not sent_at:  # no reply was back
            return
        self.beat()
        lane.flow_step.received(raw)  # (the breaker's probe is the first message)
        lane.noted(len(raw), lane.receiver.busy)
        if not raw:
            return
        held = lane.settler.screen(self._hold(lane, raw, sent_at), self.isolation.add)
        if self.stopping or self._signalled or not self.control.receiving(lane.spec.name):  # never start
            lane.house.release_later(held)
            lane.flow_step.released([e.message.receipt_handle for e in held])  # (a probe among them)
        elif lane.per_call:
            lane.batches.add(held)
        else:
            lane.executor.submit_all([(lane.calls, task) for task in tasks(held, lane.spec.queue.is_fifo)])

    def _hold(self, lane: Lane, raw: list[dict[str, Any]], sent_at: float) -> list[InFlight]:
        visible_until = sent_at + lane.spec.queue.visibility_timeout
        held = [InFlight(Message.from_sqs(m, lane.url), visible_until) for m in raw]
        lane.metrics.received.inc(len(held))
        self.recycle.received += len(held)
        now = time.time()
        observe_all(lane.metrics.message_age, [max(0.0, now - e.message.sent_at.timestamp()) for e in held])
        self.held.add(held)
        return held

    def _submit(self, lane: Lane, entries: list[InFlight]) -> None:
        lane.executor.submit((lane.calls, entries))

    def _lane(self, entry: InFlight) -> Lane:
        return self._by_url[entry.message.queue_url]

    def _release(self, entries: list[InFlight], seconds: int = 0) -> None:
        """Release entries of any queues, each through its own queue's housekeeper."""
        for lane in self.lanes:
            if mine := [e for e in entries if e.message.queue_url == lane.url]:
                lane.house.release(mine, seconds)

    def _held_changed(self, count: int) -> None:
        for lane in self.lanes:
            lane.metrics.in_flight.set(self.held.count_of(lane.url))
        self._record_running()

    def _out(self) -> int:
        return sum(lane.receiver.out for lane in self.lanes)

    def _wait_for_starts(self) -> list[tuple[int, int]]:
        """The receives to start (lane, messages to ask for), once there are any: the plan for
        the free slots, taken at once when it asks for a full batch (or probes an idle queue),
        else after a linger (two receive round trips, SLOT_LINGER..LINGER_MAX), so a slot held
        one round trip longer than its batch (a DLQ send, a retry) still rejoins it. Returns []
        early for a reply back, a stop or a batch due."""
        batching = any(lane.batches for lane in self.lanes)
        want = 1 if batching else min(max(lane.receiver.batch_size for lane in self.lanes), self._slots)
        probe = self.lanes[0].receiver.batch_size if len(self.lanes) == 1 else 1
        linger_until = 0.0
        with self.held.changed:
            while True:
                now = time.monotonic()
                if (
                    self.stopping
                    or self._signalled
                    or self._stuck
                    or any(lane.receiver.replied() for lane in self.lanes)
                ):
                    return []
                if any(lane.batches and lane.batches.due() for lane in self.lanes) or self.control.refresh():
                    return []
                reserved = sum(lane.receiver.reserved for lane in self.lanes)
                free = self._slots - self.held.busy() - reserved
                starts = [] if self.isolation.waiting else self._plan(free, now, probe)
                if self.isolation.waiting and not self._out():
                    return []
                asked = sum(ask for _, ask in starts)
                enough = min(want, self._slots - reserved - self.held.overdue)  # (probes out hold some)
                if starts and (asked >= enough or any(self.lanes[i].state == IDLE for i, _ in starts)):
                    return starts
                if starts:
                    linger_until = linger_until or now + max(
                        SLOT_LINGER, min(LINGER_MAX, 2 * self._round_trip())
                    )
                    if now >= linger_until:
                        return starts
                self.held.wake_at = self._slots - want - reserved - self.held.overdue
                until = [now + STOP_CHECK, linger_until or math.inf]
                until += [
                    t for lane in self.lanes for t in (lane.receiver.ready_at, lane.gate_until) if t > now
                ]
                until += [lane.batches.until for lane in self.lanes if lane.batches]
                self.held.changed.wait(max(0.001, min(until) - now))
                self.beat()
                self._notice_stop()

    def _plan(self, free: int, now: float, probe: int) -> list[tuple[int, int]]:
        top = max(lane.served for lane in self.lanes)
        for lane in self.lanes:
            if lane.state == IDLE:  # an idle queue's unused turns are not saved up for later
                lane.served = top
        demands = [
            lane.demand(self.held.count_of(lane.url), len(self.lanes) == 1)
            for lane in self.lanes
            if now >= lane.receiver.ready_at
            and now >= lane.gate_until
            and self.control.receiving(lane.spec.name)
        ]
        return plan(demands, free, probe) if demands else []

    def _round_trip(self) -> float:
        return max(lane.receiver.round_trip for lane in self.lanes)

    def _release_paused(self) -> None:
        """A queue an operator paused (control.py) starts no receive (`_plan`), and what it holds
        unstarted (a batch being gathered) goes back now; running handlers finish."""
        for lane in self.lanes:
            if lane.batches and not self.control.receiving(lane.spec.name):
                lane.house.release_later(lane.batches.take_all())

    # --- stuck handlers (the timer) and dead threads ------------------------------------------

    def _report_stuck(self, entry: InFlight) -> None:
        """On the timer thread: a handler ran `stuck_margin` past its timeout and still runs. Its
        thread is lost; a successor takes this worker's place, and this one exits."""
        self.metrics.handlers_stuck.inc()  # type: ignore[union-attr]
        self._lane(entry).log.error(
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
        for lane in self.lanes:  # replies back, or back within the grace: never started
            if late := lane.receiver.stop(wait_all=not self._abandon_poll):
                lane.house.release(self._hold(lane, late, time.monotonic()))
            lane.house.release(lane.batches.take_all())
        self.isolation.release_waiting()
        for executor in self._executors:
            if isinstance(executor, Threads):
                executor.stop()  # tasks not yet on a thread go back unstarted (run_task)
        with self.held.changed:
            while len(self.held) and time.monotonic() < grace_until and not self._forced:
                self.held.changed.wait(timeout=min(0.5, grace_until - time.monotonic()))
                self.beat()
        leftover = self.held.snapshot()
        if leftover:
            self.exit_code = EXIT_FAILURE if self._forced else self.exit_code  # work was abandoned
            self.log.warning("shutdown_grace_expired", abandoned=len(leftover), forced=self._forced)
            self._release(leftover)
        for executor in self._executors:
            if isinstance(executor, EventLoop):
                executor.stop()
        self.timer.stop()
        for lane in self.lanes:
            lane.house.stop()
            lane.calls.flush_timings()
        self.isolation.record.close()
        if not leftover and not self._stuck:
            for lane in self.lanes:
                lane.pipeline.close()
                try:
                    lane.handler.close()
                except Exception as exc:
                    lane.log.warning("handler_close_failed", error=f"{type(exc).__name__}: {exc}")
        for lane in self.lanes:
            lane.metrics.in_flight.set(0)
        self.log.info("worker_stopped", exit_code=self.exit_code)
        return self.exit_code

    def beat(self) -> None:
        if self._beat is not None:
            self._beat.value = time.time()
