"""What the fleet's scaling policy needs from each instance (docs/operations.md, "What the daemon
publishes for scaling"): every 10 s, as high-resolution CloudWatch EMF lines on stdout,
`SecondsPerMessage` per queue (the mean handler time of the messages that finished in the last
60 s; 0 while the queue's breaker is open, as more instances would not drain it) and `Slots`
(processes x concurrency, only while the daemon is ready). The supervisor ticks it."""

from __future__ import annotations

import json
import math
import sys
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
    ):
        self.namespace = namespace
        self.deployment = deployment
        self.queues = queues
        self.slots = slots
        self.read = read  # running totals by queue: (handler seconds, messages)
        self.halted = halted  # the queue's breaker is open (or it is paused) on this host
        self.stream = stream
        self._samples: deque[tuple[float, Mapping[str, tuple[float, float]]]] = deque()
        self._last: dict[str, float] = {}  # the last value published, by queue
        self._boundary = -math.inf

    def tick(self, now: float, ready: bool) -> list[dict[str, Any]]:
        """At each 10-s boundary: the records for it (written to the stream), else []."""
        boundary = math.floor(now / INTERVAL) * INTERVAL
        if boundary <= self._boundary:
            return []
        self._boundary = boundary
        totals = self.read()
        self._samples.append((boundary, totals))
        while self._samples and self._samples[0][0] < boundary - WINDOW:
            self._samples.popleft()
        oldest = self._samples[0][1]
        records = []
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
            if value is None:
                continue
            self._last[name] = value
            records.append(self._record(boundary, "SecondsPerMessage", "Seconds", value, {QUEUE: name}))
        if ready:
            records.append(self._record(boundary, "Slots", "Count", self.slots, {}))
        stream = self.stream or sys.stdout
        for record in records:
            stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        stream.flush()
        return records

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
