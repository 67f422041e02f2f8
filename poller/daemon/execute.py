"""Running handler calls: the pipeline around the handler style's call, then the settlement.

`Calls` knows one call: a single message (`run_message`, the hot path of the message style) or
a list (`run_call`, the batch and lambda styles, and FIFO groups). `Threads` runs calls on
handler threads (`concurrency` of them; one for the lambda style, whose calls run one at a time
as in a Lambda execution environment); `EventLoop` runs them as coroutines on one event loop for
`async def` handlers, with the blocking parts (pipeline steps that may wait, settling a failure)
on a thread pool. A message's clock starts when its call starts, never while it waits its turn.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from poller.daemon.inflight import Held, InFlight, Running
from poller.daemon.loops import survive
from poller.daemon.metrics import observe_all
from poller.handlers.styles import awaited
from poller.message import Message, Released
from poller.pipeline import Pipeline, finish

Owed = list[Callable[[Message, BaseException | None], None]]
TIMINGS_BATCH = 64


class Calls:
    """One handler call and its settlement. Every call is entered in `running` from its start
    until it returns, so the timer sees it even after it timed out and was settled."""

    def __init__(
        self,
        runner: Any,
        pipeline: Pipeline,
        settle: Callable[[InFlight, BaseException | None], int | None],
        release: Callable[[list[InFlight], int], Any],
        timeout: float,
        metrics: Any,
        log: Any,
        held: Held,
        running: Running,
        clear_context: Callable[[], None] | None = None,
    ):
        self.runner = runner
        self.clear_context = clear_context  # tracing: per-message log fields end with the message
        self.pipeline = pipeline
        self.settle = settle
        self.release = release
        self.timeout = timeout
        self.metrics = metrics
        self.log = log
        self.held = held
        self.running = running
        self.handle = runner.fn
        # Handler times, written to the histogram in bulk (one lock and file store a bucket, not
        # two a message): when a handler thread goes idle, or every TIMINGS_BATCH.
        self._timings: collections.deque[float] = collections.deque()

    # --- one message (message style) ----------------------------------------------------------

    def run_message(self, entry: InFlight) -> int | None:
        """Run one message and settle it. None if it left the queue (its FIFO group may go on),
        else the seconds until it is visible again (the rest of its group waits as long)."""
        if not entry.begin(self.timeout):
            return 0  # settled before it started (released at a stop): it never runs
        self.running.add(entry)
        error: BaseException | None = None
        try:
            if self.pipeline.empty:
                awaited(self.handle(entry.message), self.handle)
            else:
                message, owed = self.pipeline.prepare(entry.message)
                try:
                    awaited(self.handle(message), self.handle)
                except BaseException as exc:
                    finish(owed, message, exc)
                    raise
                finish(owed, message, None)
        except BaseException as exc:  # one catch point: every outcome is settled below
            error = exc
        return self.conclude(entry, error)

    def conclude(self, entry: InFlight, error: BaseException | None) -> int | None:
        elapsed = time.monotonic() - entry.started
        self.running.remove(entry)
        self._timings.append(elapsed)
        if len(self._timings) >= TIMINGS_BATCH:
            self.flush_timings()
        if not entry.claim():  # the timer timed it out meanwhile (or a stop gave up on it)
            if entry.timed_out:
                self.held.overdue_returned()
                self.log.warning(
                    "handler_finished_after_timeout",
                    message_id=entry.message.message_id,
                    receive_count=entry.message.receive_count,
                    seconds=round(elapsed, 3),
                )
            return entry.delay
        delay = self.settle(entry, error)
        if self.clear_context is not None:
            self.clear_context()
        return delay

    def flush_timings(self) -> None:
        timings = []
        with contextlib.suppress(IndexError):
            while True:
                timings.append(self._timings.popleft())  # atomic: threads may flush at once
        if timings:
            observe_all(self.metrics.handler_seconds, timings)

    def run_task(self, task: list[InFlight], stopping: Callable[[], bool]) -> None:
        """On a handler thread: one call of the batch or lambda style, or messages in order. A
        task that reaches its thread after a stop began goes back unstarted."""
        if stopping():
            self.release(task, 0)
        elif self.runner.per_call:
            self.run_call(task)
        elif len(task) == 1:
            self.run_message(task[0])
        else:
            self.run_group(task, stopping)

    def run_group(self, entries: Sequence[InFlight], stopping: Callable[[], bool]) -> None:
        """A FIFO group's messages one at a time. After a failure the rest go back untouched,
        visible when the failed one is again, so the group's order holds on every server."""
        for n, entry in enumerate(entries):
            if stopping():
                self.release(list(entries[n:]), 0)
                return
            if (delay := self.run_message(entry)) is not None:
                self.release(list(entries[n + 1 :]), delay)
                return

    # --- a list of messages in one call (batch and lambda styles) -------------------------------

    def prepare_all(self, entries: Sequence[InFlight]) -> tuple[list[InFlight], list[Message], list[Owed]]:
        """Start the entries and run every step's `before`. Those a step failed or skipped are
        settled here; returns the rest with their handler messages and `after` hooks owed."""
        ready, messages, owed = [], [], []
        for entry in entries:
            if not entry.begin(self.timeout):
                continue  # settled already: never runs
            self.running.add(entry)
            try:
                message, hooks = self.pipeline.prepare(entry.message)
            except BaseException as exc:
                self.conclude(entry, exc)
                continue
            ready.append(entry)
            messages.append(message)
            owed.append(hooks)
        return ready, messages, owed

    def run_call(self, entries: Sequence[InFlight]) -> None:
        ready, messages, owed = self.prepare_all(entries)
        if not ready:
            return
        try:
            results = self.runner.call(messages)
        except BaseException as exc:  # what the runner does not catch still fails the whole call
            results = [exc] * len(messages)
        self.settle_all(ready, messages, owed, results)

    def settle_all(
        self,
        ready: Sequence[InFlight],
        messages: Sequence[Message],
        owed: Sequence[Owed],
        results: Sequence[BaseException | None],
    ) -> None:
        delays: dict[str | None, int] = {}  # FIFO: the first failure's delay in each group
        released = []
        for entry, message, hooks, result in zip(ready, messages, owed, results, strict=True):
            finish(hooks, message, result)
            if isinstance(result, Released):  # FIFO: an earlier message of its group failed
                released.append(entry)
                continue
            if (delay := self.conclude(entry, result)) is not None:
                delays.setdefault(message.group_id, delay)
        by_delay: dict[int, list[InFlight]] = {}
        for entry in released:
            self.running.remove(entry)
            by_delay.setdefault(delays.get(entry.message.group_id, 0), []).append(entry)
        for delay, entries in by_delay.items():
            self.release(entries, delay)


def tasks(held: list[InFlight], fifo: bool) -> list[list[InFlight]]:
    """A receive's messages as tasks: one each, or, FIFO, one a group (in order; groups run in
    parallel)."""
    if not fifo:
        return [[entry] for entry in held]
    groups: dict[str | None, list[InFlight]] = {}
    for entry in held:
        groups.setdefault(entry.message.group_id, []).append(entry)
    return list(groups.values())


class Threads:
    """`count` handler threads taking tasks from one queue: the only threads (with the event
    loop) that run handlers and the pipeline steps around them."""

    def __init__(
        self,
        count: int,
        run: Callable[[Any], None],
        log: Any,
        count_error: Callable[[str], None],
        prefix: str = "handler-",
        idle: Callable[[], None] | None = None,
    ):
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._run = run
        self.log = log
        self.count_error = count_error
        self.idle = idle or (lambda: None)  # a thread is about to wait for work
        self.threads = [
            threading.Thread(target=self._loop, name=f"{prefix}{n}", daemon=True) for n in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def submit(self, task: Any) -> None:
        self._tasks.put(task)

    def submit_all(self, tasks: list[Any]) -> None:
        for task in tasks:
            self._tasks.put(task)

    def stop(self) -> None:
        for _ in self.threads:
            self._tasks.put(None)

    def _loop(self) -> None:
        while True:
            if self._tasks.empty():
                survive(self.idle, self.log, self.count_error)
            if (task := self._tasks.get()) is None:
                return
            survive(lambda t=task: self._run(t), self.log, self.count_error)


class EventLoop:
    """One asyncio loop on a thread of its own for `async def` handlers; blocking work (pipeline
    steps, settling: SQS and other AWS calls) runs on a small thread pool beside it."""

    def __init__(self, concurrency: int, stopping: Callable[[], bool]):
        self.stopping = stopping
        self.loop = asyncio.new_event_loop()
        self.pool = ThreadPoolExecutor(max_workers=min(32, concurrency + 4), thread_name_prefix="settle")
        self._thread = threading.Thread(target=self.loop.run_forever, name="event-loop", daemon=True)
        self._running: set[asyncio.Task[None]] = set()  # strong references until done
        self._exclusive: dict[int, Any] = {}  # lambda style: one lock a queue (its Calls)
        self.threads = [self._thread]

    def start(self) -> None:
        self._thread.start()

    def submit(self, task: Any) -> None:
        self.submit_all([task])

    def submit_all(self, tasks: list[Any]) -> None:
        """Many coroutines for one wake-up of the loop (not one cross-thread call each)."""
        self.loop.call_soon_threadsafe(self._start, tasks)

    def _start(self, tasks: list[Any]) -> None:
        for task in tasks:
            self._running.add(running := self.loop.create_task(self._run(task)))
            running.add_done_callback(lambda t, calls=task[0]: self._done(t, calls))

    def _done(self, task: asyncio.Task[None], calls: Calls) -> None:
        self._running.discard(task)
        if not self._running:
            calls.flush_timings()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.pool.shutdown(wait=False)

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(self.pool, fn, *args)

    async def _run(self, task: tuple[Calls, list[InFlight]]) -> None:
        calls, entries = task
        if self.stopping():  # reached the loop after a stop began: back unstarted
            await self._blocking(calls.release, entries, 0)
            return
        if calls.runner.per_call:
            async with self._lock_of(calls):  # lambda: one call at a time; the clock starts inside
                await self._call(calls, entries)
            return
        for n, entry in enumerate(entries):  # one message, or a FIFO group in order
            if self.stopping():
                await self._blocking(calls.release, entries[n:], 0)
                return
            if (delay := await self._one(calls, entry)) is not None and calls.runner.fifo:
                await self._blocking(calls.release, entries[n + 1 :], delay)
                return

    def _lock_of(self, calls: Calls) -> Any:
        if not calls.runner.exclusive:
            return contextlib.nullcontext()
        return self._exclusive.setdefault(id(calls), asyncio.Lock())

    async def _call(self, calls: Calls, entries: list[InFlight]) -> None:
        ready, messages, owed = await self._blocking(calls.prepare_all, entries)
        if not ready:
            return
        try:
            async with asyncio.timeout(calls.timeout + 1):
                results = await calls.runner.call_async(messages)
        except BaseException as exc:
            results = [exc] * len(messages)
        await self._blocking(calls.settle_all, ready, messages, owed, results)

    async def _one(self, calls: Calls, entry: InFlight) -> int | None:
        if not entry.begin(calls.timeout):
            return 0
        calls.running.add(entry)
        error: BaseException | None = None
        message, owed = entry.message, []
        pipeline = calls.pipeline
        # A message no step waits on (a plain body, not an S3 pointer) runs its steps right here.
        on_loop = pipeline.empty or not pipeline.blocks(message)
        try:
            if on_loop:
                message, owed = pipeline.prepare(message)
            else:
                message, owed = await self._blocking(pipeline.prepare, message)
            async with asyncio.timeout(calls.timeout + 1):  # cancels what the timer gave up on
                await calls.handle(message)
        except BaseException as exc:
            error = exc
        if owed and on_loop:
            finish(owed, message, error)
        elif owed:
            await self._blocking(finish, owed, message, error)
        if error is None:  # settles without a thread hop: a delete only joins the next batch
            return calls.conclude(entry, None)
        return await self._blocking(calls.conclude, entry, error)


def assign_executors(
    lanes: Sequence[Any],
    slots: int,
    stopping: Callable[[], bool],
    log: Any,
    count_error: Callable[[str], None],
) -> list[Any]:
    """Each queue's executor (set as `lane.executor`), and the distinct ones: handler threads
    shared by the queues (the lambda style: one thread a queue, its calls one at a time, as in a
    Lambda execution environment); one event loop for async handlers. Handler times are written
    in bulk as threads go idle."""
    shared = loop = None
    run = lambda item: item[0].run_task(item[1], stopping)  # noqa: E731
    flush = lambda: [lane.calls.flush_timings() for lane in lanes]  # noqa: E731
    executors: list[Any] = []
    for lane in lanes:
        if lane.runner.is_async:
            loop = lane.executor = loop or EventLoop(slots, stopping)
        elif lane.runner.exclusive:
            lane.executor = Threads(1, run, log, count_error, f"handler-{lane.index}-", flush)
        else:
            shared = lane.executor = shared or Threads(slots, run, log, count_error, idle=flush)
        if lane.executor not in executors:
            executors.append(lane.executor)
    return executors
