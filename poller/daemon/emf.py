"""Per-version figures as CloudWatch embedded metric format (EMF): one JSON log line a
minute with the counts since the last line, dimensioned by deployment and version.

The line travels the way every log line does (stdout -> journald -> exporter file ->
CloudWatch agent); the agent sends a log group's events with `x-amzn-logs-format:
json/emf` once it has seen one carrying "CloudWatchMetrics", and CloudWatch then turns
them into metrics. The instance refresh's alarms watch the new version's own figures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TextIO

from poller.daemon.scaling import write_records

# Metric name -> EMF unit. The supervisor passes totals under these names.
METRICS: dict[str, str] = {
    "Deleted": "Count",
    "DeadLettered": "Count",
    "HandlerErrors": "Count",
}
# EMF metric <- sqs_poller_messages_total outcome. HandlerErrors counts every message whose
# handler raised and that will be retried (an exception, Retry, Unavailable).
OUTCOME_OF_METRIC = {"Deleted": "deleted", "DeadLettered": "dead_lettered", "HandlerErrors": "retried"}
DEPLOYMENT_DIMENSION = "Deployment"
VERSION_DIMENSION = "Version"
EVENT = "emf_metrics"
MAX_DIMENSION_VALUE = 1024  # CloudWatch's limit for a dimension value


def render_emf_record(
    namespace: str,
    deployment: str,
    version: str,
    counts: Mapping[str, float],
    timestamp_ms: int,
) -> dict:
    """An EMF record: per-version metrics, and the same figures for the whole deployment."""
    unknown = set(counts) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown EMF metrics: {sorted(unknown)}")
    if not namespace or not deployment or not version:
        raise ValueError("namespace, deployment and version must not be empty")
    record: dict = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [
                        [DEPLOYMENT_DIMENSION, VERSION_DIMENSION],
                        [DEPLOYMENT_DIMENSION],
                    ],
                    "Metrics": [{"Name": name, "Unit": METRICS[name]} for name in METRICS if name in counts],
                }
            ],
        },
        "event": EVENT,
        DEPLOYMENT_DIMENSION: deployment[:MAX_DIMENSION_VALUE],
        VERSION_DIMENSION: version[:MAX_DIMENSION_VALUE],
    }
    record.update({name: counts[name] for name in METRICS if name in counts})
    return record


def read_outcome_totals(multiproc_dir: str) -> dict[str, float]:
    """Running totals of every worker process (Prometheus multiprocess files), by EMF name."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    by_outcome: dict[str, float] = {}
    for family in registry.collect():
        if family.name != "sqs_poller_messages":
            continue
        for sample in family.samples:
            if sample.name == "sqs_poller_messages_total":
                outcome = sample.labels.get("outcome", "")
                by_outcome[outcome] = by_outcome.get(outcome, 0.0) + sample.value
    return {metric: by_outcome.get(outcome, 0.0) for metric, outcome in OUTCOME_OF_METRIC.items()}


class EmfReporter:
    """Turns running totals into per-interval deltas and writes them as one EMF line."""

    def __init__(
        self,
        namespace: str,
        deployment: str,
        version: str,
        stream: TextIO | None = None,
    ):
        self.namespace = namespace
        self.deployment = deployment
        self.version = version
        self.stream = stream
        self._last: dict[str, float] = {}

    def report(self, totals: Mapping[str, float], now: float | None = None) -> dict:
        """Write the counts since the previous call (zeros included: an alarm needs data)."""
        counts = {}
        for name in METRICS:
            total = float(totals.get(name, 0))
            previous = self._last.get(name, 0.0)
            # A total that went down was reset (the counters restarted): count it afresh.
            counts[name] = total - previous if total >= previous else total
            self._last[name] = total
        timestamp_ms = int((time.time() if now is None else now) * 1000)
        record = render_emf_record(self.namespace, self.deployment, self.version, counts, timestamp_ms)
        write_records([record], self.stream)
        return record


class EmfTicker:
    """The supervisor's side: an EmfReporter fed the workers' totals once an interval, and once
    more at the end for the last partial interval. (The scaling figures, every 10 s, have a
    thread of their own: backlog.py.)"""

    def __init__(self, reporter: EmfReporter, multiproc_dir: str, interval: float = 60.0):
        self.reporter = reporter
        self.multiproc_dir = multiproc_dir
        self.interval = interval
        self.next = time.monotonic() + interval

    def tick(self) -> None:
        if time.monotonic() >= self.next:
            self.flush()

    def flush(self) -> None:
        self.next = time.monotonic() + self.interval
        self.reporter.report(read_outcome_totals(self.multiproc_dir))


def emf_ticker(config: Any, multiproc_dir: str) -> EmfTicker:
    """The supervisor's per-release figures, a minute at a time."""
    m = config.metrics
    return EmfTicker(EmfReporter(m.emf_namespace, m.deployment, m.version), multiproc_dir)
