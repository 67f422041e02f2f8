"""The supervisor's `scaling` thread: on every 10-s boundary it samples the backlog of each queue
the daemon serves (GetQueueAttributes `ApproximateNumberOfMessages`: one request a queue, all
in parallel, one attempt each, short timeouts) and publishes the fleet's scaling figures for
that boundary (scaling.py): `BacklogSeconds`, `SecondsPerMessage` a queue, `Slots`.

It runs no user code, and nothing waits on it: the supervisor's main loop makes no SQS call. A
sample that fails (any queue's request raised, timed out, or was not back within
SAMPLE_BUDGET) publishes no `BacklogSeconds` for that boundary, never a guess or a 0 that
would scale the group in; it is logged (`backlog_sample_failed`, the first of a run and every
30th) and counted (`sqs_poller_sqs_requests_total{action="GetQueueAttributes",
outcome="error"}`). A turn that raises anyway is logged and counted (`loop_failed`, thread
`scaling`) and the loop goes on (loops.py)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from poller.daemon.loops import survive
from poller.daemon.scaling import INTERVAL, ScalingFigures, handler_totals

CONNECT_TIMEOUT = 1.0  # seconds, each request's
READ_TIMEOUT = 2.0
SAMPLE_BUDGET = 4.0  # seconds a boundary's requests may take in all: then the sample failed
AFTER_BOUNDARY = 0.05  # wake this long after the boundary, so the clock has passed it
VISIBLE = "ApproximateNumberOfMessages"


class QueueDepths:
    """Each queue's visible messages now: {name: count}, or None when any request failed."""

    def __init__(
        self,
        queues: Mapping[str, tuple[Any, str]] | Callable[[], Mapping[str, tuple[Any, str]]],
        log: Any,
    ):
        """`queues`: name -> (an Sqs of that queue's region and endpoint, its URL), or what makes
        them, called on the first sample (on the `scaling` thread: no client is made while the
        daemon starts)."""
        self._connect = queues if callable(queues) else (lambda: queues)
        self.queues: dict[str, tuple[Any, str]] = {}
        self.log = log
        self.pool: ThreadPoolExecutor | None = None
        self.failures = 0  # in a row

    def sample(self) -> dict[str, int] | None:
        if self.pool is None:
            self.queues = dict(self._connect())
            workers = max(1, min(8, len(self.queues)))
            self.pool = ThreadPoolExecutor(workers, thread_name_prefix="scaling-sample")
        futures = {
            name: self.pool.submit(sqs.attributes, url, [VISIBLE]) for name, (sqs, url) in self.queues.items()
        }
        done, late = wait(futures.values(), timeout=SAMPLE_BUDGET)
        counts: dict[str, int] = {}
        problems = []
        for name, future in futures.items():
            if future not in done:
                future.cancel()
                problems.append(f"{name}: no reply within {SAMPLE_BUDGET:g} s")
            elif (error := future.exception()) is not None:
                problems.append(f"{name}: {error}"[:300])
            else:
                try:
                    counts[name] = int(future.result()[VISIBLE])
                except (KeyError, TypeError, ValueError) as exc:
                    problems.append(f"{name}: no {VISIBLE} in the reply ({type(exc).__name__})")
        if problems:
            self.failures += 1
            if self.failures % 30 == 1:
                self.log.warning(
                    "backlog_sample_failed",
                    errors=problems,
                    failures=self.failures,
                    note="no BacklogSeconds for this boundary",
                )
            return None
        if self.failures:
            self.log.info("backlog_sample_recovered", failures=self.failures)
        self.failures = 0
        return counts

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


class ScalingThread:
    """Every boundary: sample, then tick the figures with what the sample saw."""

    def __init__(
        self,
        figures: ScalingFigures,
        depths: QueueDepths,
        ready: Callable[[], bool],
        log: Any,
        count_loop_error: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ):
        self.figures = figures
        self.depths = depths
        self.ready = ready
        self.log = log
        self.count_loop_error = count_loop_error
        self.clock = clock
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scaling", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=SAMPLE_BUDGET + 1)
        self.depths.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            boundary = math.floor(now / INTERVAL) * INTERVAL + INTERVAL
            if self._stop.wait(boundary + AFTER_BOUNDARY - now):
                return
            survive(self.turn, self.log, self.count_loop_error)

    def turn(self) -> list[dict[str, Any]]:
        now = self.clock()  # before the requests: the boundary they sample
        ready = self.ready()
        visible = self.depths.sample() if ready else None  # not ready: nothing to publish it with
        return self.figures.tick(now, ready, visible)


def scaling_thread(
    config: Any,
    multiproc_dir: str,
    flows: Mapping[str, Any],
    paused: Callable[[str], bool],
    ready: Callable[[], bool],
    metrics: Any,
    log: Any,
    client: Callable[..., Any] | None = None,
) -> ScalingThread:
    """The daemon's scaling figures; a queue whose breaker is open or that is paused counts 0."""
    from poller.daemon.metrics import render_metrics
    from poller.sqs import Sqs, make_client

    client = client or make_client
    m, w = config.metrics, config.workers
    specs: Sequence[Any] = config.queues

    def connect() -> dict[str, tuple[Any, str]]:
        queues = {}
        for spec in specs:
            q = spec.queue
            raw = client(
                q.url,
                q.region,
                q.endpoint_url,
                read_timeout=READ_TIMEOUT,
                connect_timeout=CONNECT_TIMEOUT,
                attempts=1,
                pool_size=2,
            )
            counted = metrics.for_queue(spec.name)
            queues[spec.name] = (Sqs(raw, counted.count_request, counted.count_error), q.url)
        return queues

    figures = ScalingFigures(
        m.emf_namespace,
        m.deployment,
        [spec.name for spec in specs],
        w.processes * w.concurrency,
        lambda: handler_totals(render_metrics(multiproc_dir).decode()),
        lambda name: (name in flows and not flows[name].closed) or paused(name),
        defaults={spec.name: spec.queue.seconds_per_message for spec in specs},
    )
    return ScalingThread(figures, QueueDepths(connect, log), ready, log, metrics.count_loop_error)


def start_figures(supervisor: Any) -> tuple[Any, ScalingThread]:
    """The supervisor's EMF: the per-release figures its main loop writes once a minute
    (emf.py), and the `scaling` thread, started."""
    from poller.daemon.emf import emf_ticker

    sup = supervisor
    paused = lambda name: sup.operator is not None and sup.operator.paused(name)  # noqa: E731
    scaling = scaling_thread(
        sup.config, sup.metrics_dir, sup.launcher.flows, paused, sup.ready, sup.metrics, sup.log
    )
    scaling.start()
    return emf_ticker(sup.config, sup.metrics_dir), scaling
