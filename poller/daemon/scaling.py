"""What the fleet's scaling policy needs from each instance (docs/operations.md, "What the daemon
publishes for scaling"): every 10 s, as high-resolution CloudWatch EMF lines on stdout,
- `BacklogSeconds`: for every queue, its visible messages (sampled by this host, backlog.py) times
  its seconds per message, summed: the slot-seconds of work waiting. Nothing when a sample
  failed, never a guess;
- `SecondsPerMessage` per queue: the mean handler time of the messages that finished in the
  last 60 s (the last value while none did; none measured yet: nothing, and BacklogSeconds uses
  the queue's `seconds_per_message`); 0 while the queue is paused or its breaker is open, as
  more instances would not drain it;
- `Slots`: processes x concurrency.
BacklogSeconds and Slots only while the daemon is ready. The `scaling` thread ticks it (backlog.py)."""

from __future__ import annotations

import json
import math
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TextIO

INTERVAL = 10  # seconds; timestamps on these boundaries
WINDOW = 60  # seconds of finished messages averaged
DEPLOYMENT, QUEUE = "Deployment", "Queue"


def handler_totals(metrics_text: str) -> dict[str, tuple[float, float]]:
    """(sum of handler seconds, messages) by queue, from a /metrics page."""
    from poller.daemon.metrics import metric_values

    totals: dict[str, tuple[float, float]] = {}
    for key, value in metric_values(metrics_text).items():
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            head = f'sqs_poller_handler_seconds{suffix}{{queue="'
            if key.startswith(head):
                name = key[len(head) : -2]
                pair = list(totals.get(name, (0.0, 0.0)))
                pair[slot] = value
                totals[name] = (pair[0], pair[1])
    return totals


class ScalingFigures:
    def __init__(
        self,
        namespace: str,
        deployment: str,
        queues: list[str],
        slots: int,
        read: Callable[[], Mapping[str, tuple[float, float]]],
        halted: Callable[[str], bool],
        stream: TextIO | None = None,
        defaults: Mapping[str, float] | None = None,
    ):
        self.namespace = namespace
        self.deployment = deployment
        self.queues = queues
        self.slots = slots
        self.read = read  # running totals by queue: (handler seconds, messages)
        self.halted = halted  # the queue's breaker is open (or it is paused) on this host
        self.stream = stream
        self.defaults = dict(defaults or {})  # the queue's seconds_per_message, until measured
        self._samples: deque[tuple[float, Mapping[str, tuple[float, float]]]] = deque()
        self._last: dict[str, float] = {}  # the last value published, by queue
        self._boundary = -math.inf

    def tick(self, now: float, ready: bool, visible: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        """At each 10-s boundary: the records for it (written to the stream), else []. `visible`:
        each queue's visible messages sampled at this boundary; None: no sample (it failed), so
        no BacklogSeconds."""
        boundary = math.floor(now / INTERVAL) * INTERVAL
        if boundary <= self._boundary:
            return []
        self._boundary = boundary
        seconds = self.seconds_per_message(boundary)
        records = [
            self._record(boundary, "SecondsPerMessage", "Seconds", value, {QUEUE: name})
            for name, value in seconds.items()
            if value is not None
        ]
        if ready and visible is not None:
            work = backlog_seconds(self.queues, visible, seconds, self.defaults)
            records.append(self._record(boundary, "BacklogSeconds", "Seconds", work, {}))
        if ready:
            records.append(self._record(boundary, "Slots", "Count", self.slots, {}))
        write_records(records, self.stream)
        return records

    def seconds_per_message(self, boundary: float) -> dict[str, float | None]:
        """Each queue's figure at this boundary: the window's mean, 0 while halted, the last
        value while none finished lately, None before any did."""
        totals = self.read()
        self._samples.append((boundary, totals))
        while self._samples and self._samples[0][0] < boundary - WINDOW:
            self._samples.popleft()
        oldest = self._samples[0][1]
        out: dict[str, float | None] = {}
        for name in self.queues:
            seconds, count = totals.get(name, (0.0, 0.0))
            before_seconds, before_count = (
                oldest.get(name, (0.0, 0.0)) if oldest is not totals else (0.0, 0.0)
            )
            if count < before_count:  # counters restarted (every worker replaced): start afresh
                before_seconds = before_count = 0.0
            if self.halted(name):
                value: float | None = 0.0
            elif count > before_count:
                value = (seconds - before_seconds) / (count - before_count)
            else:
                value = self._last.get(name)  # none finished lately: the last value, or nothing
            if value is not None:
                self._last[name] = value
            out[name] = value
        return out

    def _record(self, at: float, name: str, unit: str, value: float, dims: dict[str, str]) -> dict[str, Any]:
        return {
            "_aws": {
                "Timestamp": int(at * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [[DEPLOYMENT, *dims]],
                        "Metrics": [{"Name": name, "Unit": unit, "StorageResolution": 1}],
                    }
                ],
            },
            "event": "emf_scaling",
            DEPLOYMENT: self.deployment,
            **dims,
            name: round(value, 6),
        }


def backlog_seconds(
    queues: list[str],
    visible: Mapping[str, int],
    seconds: Mapping[str, float | None],
    defaults: Mapping[str, float],
) -> float:
    """Σ over the queues of visible x seconds per message (measured, else the queue's default;
    0 for a halted queue, as `seconds` says): slot-seconds of work waiting."""
    total = 0.0
    for name in queues:
        per = seconds.get(name)
        total += visible.get(name, 0) * (defaults.get(name, 1.0) if per is None else per)
    return total


_WRITE = threading.Lock()  # the scaling thread and the supervisor's main loop both write EMF


def write_records(records: list[dict[str, Any]], stream: TextIO | None = None) -> None:
    """Each record one line on stdout (the CloudWatch agent's EMF), whole lines only."""
    if not records:
        return
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    out = stream or sys.stdout
    with _WRITE:
        out.write(text)
        out.flush()
