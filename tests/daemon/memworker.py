"""A Worker on the in-memory SQS (poller/dev/memsqs.py), built as the daemon builds one, for
tests of the worker's own behaviour (no SQS server, no processes)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from poller.configload import build_config
from poller.daemon.metrics import Metrics
from poller.daemon.worker import Worker
from poller.dev.memsqs import MemorySqs
from poller.handlers.load import LoadedHandler

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-dlq"
BASE = {
    "queue": {"url": URL, "dlq_url": DLQ, "wait_time_seconds": 0, "visibility_timeout": 30},
    "retry": {"backoff_base": 10.0, "backoff_max": 60},
    "workers": {"processes": 1, "concurrency": 4, "shutdown_grace": 5},
    "handler": {"target": "tests.sample_handlers:noop"},
    "metrics": {"listen": ""},
}


def make_worker(
    sqs: MemorySqs, handle: Any, pipeline: Any = None, **sections: dict[str, Any]
) -> tuple[Worker, CollectorRegistry]:
    """An initialized worker running `handle`; `sections` change keys of the config above."""
    raw = {name: {**BASE.get(name, {}), **keys} for name, keys in {**BASE, **sections}.items()}
    registry = CollectorRegistry()
    worker = Worker(
        build_config(raw, {}),
        sqs=sqs,  # type: ignore[arg-type]
        metrics=Metrics(registry),
        handler=LoadedHandler(handle, lambda: None, "test"),
        pipeline=pipeline,
    )
    worker.initialize()
    return worker, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value summed over the labels not given (every queue's, when `queue` is not)."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
