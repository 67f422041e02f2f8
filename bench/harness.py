"""What every benchmark needs: queues, a paced producer, the daemon as a child process with a
systemd notify socket, and CPU/RSS of a process tree read from /proc."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3

from poller.dev.localsqs import create_queue_pair, free_port, use_fake_credentials

REPO = Path(__file__).resolve().parent.parent


def compile_tree(repo: Path) -> None:
    """Byte-compile a checkout's package and bench, as installing a wheel does: with
    PYTHONDONTWRITEBYTECODE set (as on CI machines), every process would compile poller's source
    again at start, which no installed daemon does (~0.2 s of CPU a process start)."""
    import compileall

    for folder in ("poller", "bench"):
        if (repo / folder).is_dir():
            compileall.compile_dir(str(repo / folder), quiet=1)


TICK = os.sysconf("SC_CLK_TCK")

use_fake_credentials()  # moto accepts any; the children inherit them


# --- /proc ------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """pid and every live process below it."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                todo += map(int, Path(f"/proc/{current}/task/{task}/children").read_text().split())
        except OSError:
            continue
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user+sys) of the tree, children already reaped included (cutime+cstime)."""
    total = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / TICK


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of one process, in bytes."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


# --- SQS --------------------------------------------------------------------------------------


def client(endpoint_url: str) -> Any:
    return boto3.session.Session().client("sqs", region_name="us-east-1", endpoint_url=endpoint_url)


def new_queues(sqs: Any, visibility: int = 30, max_receive_count: int = 10) -> tuple[str, str]:
    return create_queue_pair(sqs, f"b-{uuid.uuid4().hex[:10]}", False, max_receive_count, visibility)


def queue_total(sqs: Any, url: str) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attrs[n]) for n in names)


def wait_drained(sqs: Any, url: str, timeout: float = 300, interval: float = 0.1) -> float:
    """Wait until nothing is left on the queue (visible, in flight or delayed); returns the time."""
    deadline = time.monotonic() + timeout
    while queue_total(sqs, url):
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue not drained within {timeout}s")
        time.sleep(interval)
    return time.monotonic()


def send_batch(sqs: Any, url: str, bodies: list[str]) -> None:
    entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies)]
    response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    if response.get("Failed"):
        raise RuntimeError(f"send failed: {response['Failed']}")


def send_paced(sqs: Any, url: str, count: int, rate: float, body: str = "{}") -> None:
    """count messages in batches of ten at `rate` messages a second (keeps the queue shallow)."""
    interval = 10 / rate
    next_at = time.monotonic()
    for start in range(0, count, 10):
        send_batch(sqs, url, [body] * min(10, count - start))
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def preload(sqs: Any, url: str, count: int, body: str = "{}") -> None:
    for start in range(0, count, 10):
        send_batch(sqs, url, [body] * min(10, count - start))


class Feeder(threading.Thread):
    """Keeps about `depth` messages visible until `total` are sent or stop(): the consumer never
    starves, and moto (which slows down as a queue deepens) stays fast."""

    def __init__(
        self, endpoint_url: str, url: str, depth: int, total: int | None = None, interval: float = 0.1
    ):
        super().__init__(daemon=True)
        self.interval = interval  # each look at the depth costs moto a scan of the queue
        self.sqs = client(endpoint_url)
        self.url, self.depth, self.total = url, depth, total
        self.sent = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set() and (self.total is None or self.sent < self.total):
            attrs = self.sqs.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            missing = self.depth - int(attrs["ApproximateNumberOfMessages"])
            if self.total is not None:
                missing = min(missing, self.total - self.sent)
            if missing <= 0:
                time.sleep(self.interval)
                continue
            for start in range(0, missing, 10):
                n = min(10, missing - start)
                send_batch(self.sqs, self.url, ["{}"] * n)
                self.sent += n

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)


# --- consumers --------------------------------------------------------------------------------


def write_config(
    workdir: Path, endpoint_url: str, url: str, dlq_url: str, target: str, **overrides: Any
) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "queue": {
            "url": url,
            "dlq_url": dlq_url,
            "endpoint_url": endpoint_url,
            "region": "us-east-1",
            "wait_time_seconds": 20,
            "visibility_timeout": 30,
            "max_receives": 5,
        },
        "workers": {"processes": 2, "concurrency": 10, "shutdown_grace": 10},
        "handler": {"target": target, "timeout": 60},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "logging": {"level": "info", "format": "json"},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = workdir / f"poller-{uuid.uuid4().hex[:6]}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Consumer:
    """A consumer process: start(), wait_ready(), cpu(), stop()."""

    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return tree_cpu(self.pid)

    def stop(self, timeout: float = 60, wake: Any = None) -> int:
        """SIGTERM; `wake` (e.g. a few messages) ends long polls so the drain is quick."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if wake is not None:
                wake()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in reversed(descendants(self.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return self.proc.wait()


class Daemon(Consumer):
    """`python -m poller run`, with its own NOTIFY_SOCKET to see READY=1 the way systemd does."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str] | None = None):
        self.config = config
        self.workdir = workdir
        self.log = workdir / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self.notify_path = Path(tempfile.mkdtemp(prefix="bench-notify-")) / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.env = {**os.environ, **(env or {}), "NOTIFY_SOCKET": str(self.notify_path)}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env.pop("WATCHDOG_USEC", None)
        import tomllib

        self.metrics_url = "http://" + tomllib.loads(config.read_text())["metrics"]["listen"] + "/metrics"

    def start(self) -> Daemon:
        self._fh = open(self.log, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poller", "run", "--config", str(self.config)],
            cwd=REPO,
            env=self.env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from start to READY=1."""
        self.notify.settimeout(timeout)
        while True:
            try:
                data = self.notify.recv(4096).decode()
            except TimeoutError:
                raise RuntimeError(f"no READY=1 within {timeout}s:\n{self.log.read_text()[-3000:]}") from None
            if "READY=1" in data.split("\n"):
                return time.monotonic() - self.started

    def workers(self) -> list[int]:
        # (spawn_main: a checkout from before workers were started by exec, for bench.ab)
        worker = re.compile(rb"poller\.daemon\.boot|spawn_main")
        return [p for p in descendants(self.pid)[1:] if worker.search(_cmdline(p))]

    def scrape(self) -> dict[str, float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        from poller.daemon.metrics import metric_values

        return metric_values(text)

    def stop(self, timeout: float = 60, wake: Any = None) -> int:
        try:
            return super().stop(timeout, wake)
        finally:
            self._fh.close()
            self.notify.close()
            self.notify_path.unlink(missing_ok=True)
            self.notify_path.parent.rmdir()


class BareLoop(Consumer):
    def __init__(self, endpoint_url: str, url: str, workdir: Path):
        from bench.bare_loop import new_counters

        self.counters = workdir / f"bare-{uuid.uuid4().hex[:6]}.bin"
        new_counters(str(self.counters))
        self.args = [
            sys.executable,
            "-m",
            "bench.bare_loop",
            "--endpoint",
            endpoint_url,
            "--queue",
            url,
            "--counters",
            str(self.counters),
        ]

    def start(self) -> BareLoop:
        self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=subprocess.PIPE, text=True)
        return self

    def wait_ready(self, timeout: float = 60) -> float:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError(f"bare loop did not start: {line!r}")
        return 0.0

    def requests(self) -> int:
        from bench.bare_loop import read_counters

        receives, deletes, _ = read_counters(str(self.counters))
        return receives + deletes


def requests_total(metrics: dict[str, float]) -> float:
    return sum(
        v for k, v in metrics.items() if k.startswith("sqs_poller_sqs_requests_total{") and "queue=" in k
    )


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
