"""Several queues in one worker: a `Lane` a queue (its receiver, flow gate, pipeline, handler
and settlement), and the pure policy that shares the worker's free slots among them (`plan`).

The policy, per turn of the worker's loop, highest priority first:
- strict priority: while a queue's last reply came back full (messages are waiting), the free
  slots go to it and its peers of that priority, none to lower priorities;
- no stall: a queue whose last reply was empty keeps one long poll out asking for one message
  (a probe), so an empty high-priority queue costs the others one slot, never a 20 s turn; a
  queue whose last reply was partial asks for no more than that reply brought;
- weights: busy queues of one priority take turns by weight (the one that got least per unit of
  weight goes next); an idle queue asks for nothing, so its share goes to the others;
- no over-fetch: a receive asks only for slots free now, within the queue's max_concurrency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from poller.config import Config, QueueSpec
from poller.daemon.receiver import MAX_PARALLEL

IDLE, ACTIVE, BUSY = "idle", "active", "busy"  # last reply: empty, partial, full


@dataclass(slots=True)
class Demand:
    """What one lane can take this turn, as `plan` sees it."""

    lane: int
    priority: int
    weight: int
    batch: int
    room: int  # slots within its max_concurrency not held or reserved
    out: int  # its receives out
    state: str  # IDLE, ACTIVE or BUSY
    served: float = 0.0  # slots given so far, over its weight (for the weighted turns)
    want: int = 10  # a queue not busy asks for at most this many (what its last reply brought)


def plan(demands: Sequence[Demand], free: int, probe: int = 1) -> list[tuple[int, int]]:
    """(lane, messages to ask for) for each receive to start now with `free` slots. `probe`: what
    an idle queue asks for (1 beside other queues; a whole batch when it is the only one)."""
    starts: list[tuple[int, int]] = []
    for priority in sorted({d.priority for d in demands}, reverse=True):
        level = [d for d in demands if d.priority == priority]
        for d in level:  # probes first: one slot each
            if d.state == IDLE and not d.out and free > 0 and d.room > 0:
                ask = min(probe, free, d.room, d.batch)
                starts.append((d.lane, ask))
                free -= ask
                d.out += 1
        wanting = [d for d in level if d.state != IDLE]
        while free > 0 and wanting:
            d = min(wanting, key=lambda x: x.served)
            ask = min(free, d.room, d.batch if d.state == BUSY else d.want)
            overlap_ok = d.state == BUSY and d.out < MAX_PARALLEL and ask >= d.batch
            if ask <= 0 or (d.out and not overlap_ok):
                wanting.remove(d)
                continue
            starts.append((d.lane, ask))
            free -= ask
            d.room -= ask
            d.out += 1
            d.served += ask / d.weight
        if any(d.state == BUSY for d in level):
            break  # strict: lower priorities wait while this one has messages waiting
    return starts


def lane_config(config: Config, spec: QueueSpec) -> Config:
    """The config as one queue's parts see it: its [queue], [handler] and [flow]."""
    return dataclasses.replace(config, queue=spec.queue, handler=spec.handler, flow=spec.flow, queues=(spec,))


class Lane:
    """One queue's parts in a worker process, built by the worker (worker.py)."""

    def __init__(self, index: int, spec: QueueSpec, config: Config, concurrency: int):
        self.index = index
        self.spec = spec
        self.name = spec.name
        self.config = config  # lane_config(...)
        self.url = spec.queue.url
        self.cap = spec.max_concurrency or concurrency
        self.state = IDLE  # until its first reply says otherwise: a probe
        self.last_got = 1  # what its last reply brought
        self.served = 0.0  # slots given over its weight, for weighted turns
        self.gate_until = 0.0  # its breaker or rate limit said: no receive before this
        self.gated = False
        # Set by build_lane, and by the worker (calls, batches, executor):
        self.metrics = self.log = self.sqs = self.flow = self.flow_step = None  # type: Any
        self.pipeline = self.runner = self.handler = self.receiver = self.house = None  # type: Any
        self.settler = self.heartbeat = self.calls = self.batches = self.executor = None  # type: Any
        self.per_call = False

    def noted(self, got: int, asked_full: bool) -> None:
        """A reply of `got` messages came back (`asked_full`: every reply collected was full)."""
        self.state = BUSY if got and asked_full else ACTIVE if got else IDLE
        self.last_got = max(1, got)

    def demand(self, in_use: int, alone: bool) -> Demand:
        r = self.receiver
        return Demand(
            self.index, self.spec.priority, self.spec.weight, r.batch_size, self.cap - in_use - r.reserved,
            r.out, self.state, self.served, r.batch_size if alone else self.last_got,
        )  # fmt: skip


def build_lane(
    index: int,
    spec: QueueSpec,
    config: Config,
    *,
    held: Any,
    running: Any,
    metrics: Any,
    log: Any,
    sqs: Any,
    flow: Any,
    pipeline: Any = None,
    handler: Any = None,
    secrets: Any = None,
) -> tuple[Lane, Any]:
    """One queue's parts (returns the lane and the worker's secrets). A handler that cannot
    load raises HandlerLoadError naming the queue when the config has several."""
    from poller.daemon.batches import Batches
    from poller.daemon.execute import Calls
    from poller.daemon.heartbeat import Heartbeat
    from poller.daemon.housekeeper import DELETE_LINGER, Housekeeper
    from poller.daemon.receiver import Receiver
    from poller.daemon.settle import Settler
    from poller.errors import HandlerLoadError
    from poller.handlers.load import load_runner
    from poller.pipeline.flow import FlowStep, report_transitions

    cfg, q = lane_config(config, spec), spec.queue
    lane = Lane(index, spec, cfg, config.workers.concurrency)
    lane.metrics, lane.log, lane.sqs, lane.flow = metrics, log, sqs, flow
    lane.flow_step = FlowStep(flow, report_transitions(metrics, log))
    lane.gated = bool(flow.interval)  # a rate limit asks before every receive
    try:
        if pipeline is None:
            from poller.pipeline.build import build_pipeline

            pipeline, secrets = build_pipeline(cfg, flow=lane.flow_step, secrets=secrets)
        lane.handler, runner = load_runner(cfg, secrets, handler)
    except HandlerLoadError as exc:
        if len(config.queues) > 1:
            raise HandlerLoadError(f"queue {spec.name}: {exc}") from exc
        raise
    lane.pipeline, lane.runner, lane.per_call = pipeline, runner, runner.per_call
    lane.receiver = Receiver(sqs, q.url, q.batch_size, q.visibility_timeout, held.changed, log)
    lane.house = Housekeeper(
        sqs,
        q.url,
        held,
        metrics,
        log,
        on_deleted=lambda entry, outcome: pipeline.settled(entry.message, outcome),
        delete_linger=max(DELETE_LINGER, min(1.0, flow.batch * flow.interval)),
    )
    lane.settler = Settler(cfg, sqs, lane.house, held, metrics, pipeline, log)
    refused = lambda e, code: lane.house.refused(e.message, code, "visibility_extend_refused")  # noqa: E731
    lane.heartbeat = Heartbeat(sqs, q.url, q.visibility_timeout, refused, log)
    unbind = None
    if config.tracing.enabled:  # a message's trace ids leave the log context with it
        from poller.pipeline.tracing import unbind_trace_ids as unbind
    lane.calls = Calls(
        runner, pipeline, lane.settler.settle, lane.house.release, spec.handler.timeout,
        metrics, log, held, running, clear_context=unbind,
    )  # fmt: skip
    h = spec.handler
    lane.batches = Batches(  # batch and lambda styles: a batch being gathered
        h.batch_size, h.batch_window, lane.cap, lambda: held.count_of(lane.url),
        lambda batch: lane.executor.submit((lane.calls, batch)),
    )  # fmt: skip
    return lane, secrets
