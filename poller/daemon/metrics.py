"""Prometheus metrics, aggregated across processes (prometheus-client multiprocess mode).

prometheus_client picks its value storage when first imported, so this module imports it lazily:
the supervisor calls `prepare_multiproc_dir()` before anything touches prometheus_client.
"""

from __future__ import annotations

import glob
import os
import shutil
import struct
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
OUTCOMES = ("deleted", "retried", "dead_lettered", "released", "filtered")
BREAKER_STATES = ("open", "probing", "closed")
HANDLER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def prepare_multiproc_dir() -> tuple[str, bool]:
    """Use $PROMETHEUS_MULTIPROC_DIR (emptied) or create a private one. Returns (dir, owned)."""
    given = os.environ.get(ENV_DIR)
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.unlink(stale)
        return given, False
    path = tempfile.mkdtemp(prefix="sqs-poller-metrics-")
    os.environ[ENV_DIR] = path
    return path, True


def remove_multiproc_dir(path: str, owned: bool) -> None:
    if owned:
        shutil.rmtree(path, ignore_errors=True)


_FAMILIES: dict[int, dict[str, Any]] = {}  # per registry: each family is registered once


def _families(registry: Any) -> dict[str, Any]:
    """The metric families of `registry`, made on first use. Per-queue families carry the
    label `queue` (last, so one queue's series read as before with `queue` added)."""
    if id(registry) in _FAMILIES:
        return _FAMILIES[id(registry)]
    import functools

    import prometheus_client

    Counter = functools.partial(prometheus_client.Counter, registry=registry)  # noqa: N806
    Gauge = functools.partial(prometheus_client.Gauge, registry=registry)  # noqa: N806
    Histogram = functools.partial(prometheus_client.Histogram, registry=registry)  # noqa: N806
    q = ("queue",)
    f = {
        "received": Counter("sqs_poller_received", "Messages received from SQS", labelnames=q),
        "messages": Counter(
            "sqs_poller_messages", "Messages settled, by outcome", labelnames=("outcome", *q)
        ),
        "handler_seconds": Histogram(
            "sqs_poller_handler_seconds", "Handler run time", labelnames=q, buckets=HANDLER_BUCKETS
        ),
        "message_age": Histogram(
            "sqs_poller_message_age_seconds", "Time from send to receive", labelnames=q, buckets=AGE_BUCKETS
        ),
        "in_flight": Gauge(
            "sqs_poller_in_flight", "Messages held by workers", labelnames=q, multiprocess_mode="livesum"
        ),
        "requests": Counter(
            "sqs_poller_sqs_requests",
            "SQS API calls, by action and outcome",
            labelnames=("action", "outcome", *q),
        ),
        "errors": Counter(
            "sqs_poller_sqs_errors",
            "Failed SQS API calls, by action and error code",
            labelnames=("action", "code", *q),
        ),
        "worker_restarts": Counter(
            "sqs_poller_worker_restarts", "Worker processes restarted by the supervisor"
        ),
        "receipt_invalid": Counter(
            "sqs_poller_receipt_handle_invalid",
            "Deletes or visibility changes refused: the message may be processed twice",
            labelnames=q,
        ),
        # Set by whichever process moved the breaker; the newest write is the host's state.
        "breaker_open": Gauge(
            "sqs_poller_breaker_open",
            "1 while the queue's circuit breaker pauses polling (downstream unavailable)",
            labelnames=q,
            multiprocess_mode="mostrecent",
        ),
        "transitions": Counter(
            "sqs_poller_breaker_transitions",
            "Circuit breaker transitions, by the state entered",
            labelnames=("to", *q),
        ),
        "queue_paused": Gauge(  # set by the supervisor alone (control.py)
            "sqs_poller_queue_paused",
            "1 while an operator paused this queue (sqs-poller pause, or quiet for every queue)",
            labelnames=q,
            multiprocess_mode="mostrecent",
        ),
        "handler_timeouts": Counter(
            "sqs_poller_handler_timeouts", "Handlers that ran past handler.timeout", labelnames=q
        ),
        "handlers_stuck": Counter(
            "sqs_poller_handlers_stuck",
            "Handlers still running past handler.timeout plus workers.stuck_margin (worker replaced)",
        ),
        "loop_errors": Counter(
            "sqs_poller_loop_errors",
            "Unexpected exceptions caught in a worker's background loop, by thread",
            labelnames=("thread",),
        ),
    }
    _FAMILIES[id(registry)] = f
    return f


class Metrics:
    """One queue's metric handles in this process (`queue`: its name), labelled children
    resolved once (no lookup per message), and the process's own (restarts, stuck handlers,
    loop errors).

    `registry`: where they register (prometheus_client's global one by default; a test passes
    its own `CollectorRegistry()` and reads it with `get_sample_value`).
    """

    def __init__(self, registry: Any = None, queue: str = "") -> None:
        from prometheus_client import REGISTRY

        self.registry = REGISTRY if registry is None else registry
        self.queue = queue
        f = _families(self.registry)
        self._f = f
        self.received = f["received"].labels(queue=queue)
        self.outcome = {name: f["messages"].labels(outcome=name, queue=queue) for name in OUTCOMES}
        self.handler_seconds = f["handler_seconds"].labels(queue=queue)
        self.message_age = f["message_age"].labels(queue=queue)
        self.in_flight = f["in_flight"].labels(queue=queue)
        self._request_children: dict[tuple[str, str], object] = {}
        self.worker_restarts = f["worker_restarts"]
        self.receipt_invalid = f["receipt_invalid"].labels(queue=queue)
        self.breaker_open = f["breaker_open"].labels(queue=queue)
        self.breaker_transitions = {to: f["transitions"].labels(to=to, queue=queue) for to in BREAKER_STATES}
        self.handler_timeouts = f["handler_timeouts"].labels(queue=queue)
        self.handlers_stuck = f["handlers_stuck"]
        self.queue_paused = f["queue_paused"]  # the family: the supervisor sets each queue's

    def for_queue(self, queue: str) -> Metrics:
        """Another queue's handles, in the same registry."""
        return Metrics(self.registry, queue)

    def count_request(self, action: str, outcome: str) -> None:
        child = self._request_children.get((action, outcome))
        if child is None:
            child = self._f["requests"].labels(action=action, outcome=outcome, queue=self.queue)
            self._request_children[(action, outcome)] = child
        child.inc()  # type: ignore[attr-defined]

    def count_error(self, action: str, code: str) -> None:
        self._f["errors"].labels(action=action, code=code, queue=self.queue).inc()

    def count_loop_error(self, thread: str) -> None:
        self._f["loop_errors"].labels(thread=thread).inc()


def metric_values(text: str, drop: tuple[str, ...] = ("queue",)) -> dict[str, float]:
    """A /metrics page as {'name{labels}': value}: every series as written, and, for series with
    a label in `drop`, also the sum over it under the key without it (so
    'sqs_poller_messages_total{outcome="deleted"}' is every queue's)."""
    import re

    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, number = line.rpartition(" ")
        value = float(number)
        values[key] = value
        if "{" in key and any(f'{label}="' in key for label in drop):
            name, _, labels = key.partition("{")
            kept = [p for p in re.findall(r'(\w+="(?:[^"\\]|\\.)*")', labels) if p.split("=")[0] not in drop]
            summed = f"{name}{{{','.join(kept)}}}" if kept else name
            values[summed] = values.get(summed, 0.0) + value
    return values


def observe_all(histogram: Any, amounts: list[float]) -> None:
    """`histogram.observe(a)` for each of `amounts` (a batch's), with one write to each bucket
    touched and one to the sum, not two writes each: a write in multiprocess mode takes a lock,
    a pid check and a store into the metrics file. Reads prometheus_client's (long stable)
    histogram layout; with another, it observes one by one."""
    try:
        bounds, buckets, total = histogram._upper_bounds, histogram._buckets, histogram._sum
    except AttributeError:
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = {}
    for amount in amounts:
        index = bisect_left(bounds, amount)  # the first bucket whose bound is >= amount
        counts[index] = counts.get(index, 0) + 1
    total.inc(sum(amounts))
    for index, count in counts.items():
        buckets[index].inc(count)


def render_metrics(path: str) -> bytes:
    """Every process's metrics files, merged. A file a worker is creating right now (empty, or
    its header not yet written) or one removed meanwhile (a dead worker's gauges) is left out of
    this scrape instead of failing it: prometheus_client's reader would raise struct.error."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    class Tolerant(MultiProcessCollector):
        def collect(self) -> Any:
            files = glob.glob(os.path.join(path, "*.db"))
            for _ in range(3):
                try:
                    return self.merge(files, accumulate=True)
                except (struct.error, ValueError, OSError):
                    files = [f for f in files if _readable(f)]
            return []

    registry = CollectorRegistry()
    registry.register(Tolerant(None, path=path))
    return generate_latest(registry)


def _readable(path: str) -> bool:
    from prometheus_client.mmap_dict import MmapedDict

    try:
        MmapedDict.read_all_values_from_file(path)
        return True
    except (struct.error, ValueError, OSError):
        return False


def mark_process_dead(pid: int, path: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)


def serve_metrics(
    address: tuple[str, int],
    path: str,
    health: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]] | None = None,
) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz (liveness) and /readyz (readiness) from a daemon thread;
    returns the server (end it with `stop_serving`). The thread waits for a connection with no
    timeout: socketserver's default looks for a stop twice a second, forever."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    probes = {"/healthz": health, "/readyz": ready or health}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST

                self._reply(200, render_metrics(path), CONTENT_TYPE_LATEST)
            elif self.path.split("?")[0] in probes:
                ok, detail = probes[self.path.split("?")[0]]()
                self._reply(200 if ok else 503, (detail + "\n").encode(), "text/plain")
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes are not worth a log line
            pass

    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(None,), name="metrics", daemon=True).start()
    return server


def stop_serving(server: ThreadingHTTPServer, timeout: float = 5.0) -> None:
    """End `serve_metrics`' thread and close its socket. Its wait has no timeout, so connections
    to the server wake it until it has seen the stop (one made before it had is just served)."""
    import socket

    stopper = threading.Thread(target=server.shutdown, name="metrics-stop", daemon=True)
    stopper.start()
    host, port = server.server_address[:2]
    deadline = time.monotonic() + timeout
    while stopper.is_alive() and time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            pass
        stopper.join(0.05)
    server.server_close()
