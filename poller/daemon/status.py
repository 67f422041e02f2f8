"""What `sqs-poller status` and `top` show, gathered by the supervisor from what its workers
already write: their prometheus files (one per process and kind: received, settled by
outcome, in flight), their running records (crashes.py: the messages each holds) and /proc
(RSS). Nothing is added to a worker's hot path.

`StatusSampler.sample()` runs on the supervisor's `control` thread (at most twice a second);
rates are the counters' change over the last WINDOW seconds. A message's running age is the
time since a sample first saw it in its worker's record (to within a sample).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from poller.daemon.control import State, iso

WINDOW = 5.0  # seconds the rates are measured over
EVERY = 0.5  # a sample at most this often
UNSETTLED = ("released",)  # outcomes that are not a handled message: it goes back unstarted
FILE_PID = re.compile(r"^(counter|gauge_livesum)_(\d+)\.db$")


def read_metric_files(metrics_dir: str) -> dict[int, dict[tuple[str, str], float]]:
    """pid -> {(sample name, queue label or ""): value} for the counters and live gauges.
    A file being created (or removed) meanwhile is skipped for this sample."""
    from prometheus_client.mmap_dict import MmapedDict

    out: dict[int, dict[tuple[str, str], float]] = {}
    try:
        names = os.listdir(metrics_dir)
    except OSError:
        return out
    for name in names:
        if not (match := FILE_PID.match(name)):
            continue
        values = out.setdefault(int(match.group(2)), {})
        try:
            for key, value, *_ in MmapedDict.read_all_values_from_file(os.path.join(metrics_dir, name)):
                _, sample, labels, _ = json.loads(key)
                if sample == "sqs_poller_messages_total" and labels.get("outcome") in UNSETTLED:
                    continue
                ident = (sample, labels.get("queue", ""))
                values[ident] = values.get(ident, 0.0) + value
        except (struct.error, ValueError, OSError):
            continue
    return out


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def running_ids(run_dir: str, pid: int) -> list[str]:
    try:
        with open(os.path.join(run_dir, "running", str(pid)), encoding="utf-8") as fh:
            return [line for line in fh.read().splitlines() if line]
    except OSError:
        return []


class StatusSampler:
    def __init__(
        self,
        queues: Sequence[str],
        metrics_dir: str,
        run_dir: str,
        workers: Callable[[], list[tuple[int, int, float]]],
        breaker: Callable[[str], str],
        control: Callable[[], State],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.queues = list(queues)
        self.metrics_dir, self.run_dir = metrics_dir, run_dir
        self.workers = workers  # (index, pid, started at, monotonic) of the live workers
        self.breaker = breaker  # queue name -> "closed" | "open" | "probing"
        self.control = control  # the effective control state
        self.clock = clock
        self.started = clock()
        self.lock = threading.Lock()
        self.history: deque[tuple[float, dict[str, tuple[float, float]]]] = deque()
        self.first_seen: dict[str, float] = {}  # message id -> when a sample first saw it held
        self.files: dict[int, dict[tuple[str, str], float]] = {}
        self.held: dict[int, list[str]] = {}  # pid -> the message ids its record names
        self._last = 0.0

    def _queue(self, label: str) -> str:
        """A sample's queue: its `queue` label, else (metrics without one) the first queue."""
        return label or self.queues[0]

    def sample(self) -> None:
        now = self.clock()
        if now - self._last < EVERY:
            return
        self._last = now
        files = read_metric_files(self.metrics_dir)
        totals = {q: [0.0, 0.0] for q in self.queues}
        for values in files.values():
            for (sample, label), value in values.items():
                at = totals.setdefault(self._queue(label), [0.0, 0.0])
                if sample == "sqs_poller_received_total":
                    at[0] += value
                elif sample == "sqs_poller_messages_total":
                    at[1] += value
        held = {pid: running_ids(self.run_dir, pid) for _, pid, _ in self.workers()}
        with self.lock:
            self.files = files
            self.history.append((now, {q: (r, h) for q, (r, h) in totals.items()}))
            while len(self.history) > 2 and now - self.history[1][0] >= WINDOW:
                self.history.popleft()
            current = {m for ids in held.values() for m in ids}
            self.first_seen = {m: self.first_seen.get(m, now) for m in current}
            self.held = held

    def _rates(self, queue: str) -> tuple[float, float, float, float]:
        """received/s, handled/s over the window; received and handled in all."""
        if not self.history:
            return 0.0, 0.0, 0.0, 0.0
        (t0, first), (t1, last) = self.history[0], self.history[-1]
        r0, h0 = first.get(queue, (0.0, 0.0))
        r1, h1 = last.get(queue, (0.0, 0.0))
        span = t1 - t0
        if span <= 0:
            return 0.0, 0.0, r1, h1
        return round((r1 - r0) / span, 2), round((h1 - h0) / span, 2), r1, h1

    def report(self, detail: str = "") -> dict[str, Any]:
        """The `status` reply: the host, each queue, each worker."""
        self.sample()
        now, wall = self.clock(), time.time()
        state = self.control()
        with self.lock:
            files, held, seen = self.files, self.held, self.first_seen
            workers = []
            in_flight = dict.fromkeys(self.queues, 0.0)
            for index, pid, started in self.workers():
                values = files.get(pid, {})
                for (sample, label), value in values.items():
                    if sample == "sqs_poller_in_flight":
                        in_flight[self._queue(label)] = in_flight.get(self._queue(label), 0.0) + value
                workers.append(
                    {
                        "index": index,
                        "pid": pid,
                        "in_flight": int(_sum(values, "sqs_poller_in_flight")),
                        "rss_mb": rss_mb(pid),
                        "uptime_seconds": round(now - started, 1),
                        "handled": int(_sum(values, "sqs_poller_messages_total")),
                        "oldest_running_seconds": _oldest(held.get(pid, []), seen, now),
                    }
                )
            oldest = _oldest([m for ids in held.values() for m in ids], seen, now)
            queues = []
            for name in self.queues:
                received_rate, handled_rate, received, handled = self._rates(name)
                until = state.paused.get(name)
                paused = not state.receiving(name, wall)
                queues.append(
                    {
                        "name": name,
                        "receiving": not paused,
                        "paused": name in state.paused and paused,
                        "paused_until": iso(until) if until is not None and paused else None,
                        "quiet": state.quiet,
                        "breaker": self.breaker(name),
                        "received_per_second": received_rate,
                        "handled_per_second": handled_rate,
                        "received": int(received),
                        "handled": int(handled),
                        "in_flight": int(in_flight.get(name, 0)),
                        # per queue once messages' records name their queue; one queue: the host's
                        "oldest_running_seconds": oldest if len(self.queues) == 1 else None,
                    }
                )
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "uptime_seconds": round(now - self.started, 1),
            "status": detail,
            "quiet": state.quiet,
            "queues": queues,
            "workers": workers,
        }


def _sum(values: dict[tuple[str, str], float], sample: str) -> float:
    return sum(v for (name, _), v in values.items() if name == sample)


def _oldest(ids: list[str], seen: dict[str, float], now: float) -> float | None:
    ages = [now - seen[m] for m in ids if m in seen]
    return round(max(ages), 1) if ages else None
