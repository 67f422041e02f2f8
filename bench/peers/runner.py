"""One measured run of one consumer: a fresh queue, the consumer started with its own access key,
a warm-up, then paced batches of ten; CPU of its process tree, the requests the server counted
for its key, send-to-handle latency from its handler's record, and its tree's peak memory."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from bench.harness import descendants, queue_total, tree_cpu
from bench.peers.consumers import APPS, REPO, Encoder, Peer, Target
from bench.peers.server import CountingMoto
from poller.dev.localsqs import create_queue_pair

MB = 1024 * 1024
SECRET = "bench-secret"
HARNESS_KEY = "AKIDBENCHHARNESS"


def harness_client(endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id=HARNESS_KEY, aws_secret_access_key=SECRET, region_name="us-east-1"
    ).client("sqs", endpoint_url=endpoint)


def send_paced(sqs: Any, url: str, encode: Encoder, count: int, rate: float, first: int = 0) -> None:
    """count messages in batches of ten at `rate` a second; each payload carries its send time."""
    interval = 10 / rate
    next_at = time.monotonic()
    for start in range(first, first + count, 10):
        entries = []
        for n in range(start, min(start + 10, first + count)):
            body, attributes = encode({"t": time.time(), "n": n})
            entry: dict[str, Any] = {"Id": str(n - start), "MessageBody": body}
            if attributes:
                entry["MessageAttributes"] = attributes
            entries.append(entry)
        failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        if failed:
            raise RuntimeError(f"send failed: {failed}")
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


class TreeMemory(threading.Thread):
    """Samples the summed RSS and PSS of a process tree; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            pids = descendants(self.pid)
            rss = pss = 0
            for pid in pids:
                rss += _status_kb(pid, "VmRSS")
                pss += _rollup_kb(pid, "Pss")
            self.peak_rss = max(self.peak_rss, rss * 1024)
            self.peak_pss = max(self.peak_pss, pss * 1024)
            self.peak_processes = max(self.peak_processes, len(pids))

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rollup_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_record(path: Path) -> dict[int, list[float]]:
    """Message number -> the latency of each time it was handled (more than one: a duplicate)."""
    handled: dict[int, list[float]] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return handled
    for line in text.splitlines():
        n, _, latency = line.partition(" ")
        handled.setdefault(int(n), []).append(float(latency))
    return handled


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


class ConsumerProcess:
    """The consumer as a child with its own access key id and environment."""

    def __init__(self, peer: Peer, target: Target, key: str, record: Path, log: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BENCH_"))}
        env.update({k: v for k, v in os.environ.items() if k.startswith("BENCH_CELERY_")})  # for tuning runs
        for name in (
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "PROMETHEUS_MULTIPROC_DIR",
            "PYTHONPATH",
            "VIRTUAL_ENV",
        ):
            env.pop(name, None)
        env.update(
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_SQS=target.endpoint,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            BENCH_QUEUE_NAME=target.name,
            BENCH_QUEUE_URL=target.url,
            BENCH_PEERS_RECORD=str(record),
            PYTHONPATH=str(APPS),
            PYTHONUNBUFFERED="1",
        )
        env.update(peer.env)
        self.argv = peer.command(str(peer.python()), target)
        self.cwd = REPO if peer.venv is None else APPS  # sqs-poller runs from the repo
        self.env, self.log = env, log

    def start(self) -> ConsumerProcess:
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self._fh, stderr=subprocess.STDOUT
        )
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10) -> int | None:
        pids = descendants(self.proc.pid)
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            code = None
        for pid in reversed(pids + descendants(self.proc.pid)):  # whatever is left of the tree
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if code is None:
            self.proc.wait()
        self._fh.close()
        return code


def run_once(
    moto: CountingMoto, peer: Peer, workdir: Path, messages: int, rate: float, warmup: int
) -> dict[str, Any]:
    """One measured run; raises RuntimeError with the consumer's last log lines if it fails."""
    sqs = harness_client(moto.endpoint_url)
    name = f"peers-{uuid.uuid4().hex[:10]}"
    url, dlq_url = create_queue_pair(sqs, name, visibility=30)  # the same redrive policy for all
    target = Target(url, name, dlq_url, moto.endpoint_url, workdir)
    key = f"AKIDPEER{uuid.uuid4().hex[:12].upper()}"
    record = workdir / f"{name}.latency"
    log = workdir / f"{name}.log"
    consumer = ConsumerProcess(peer, target, key, record, log).start()
    encode = peer.encoder(name)
    memory = TreeMemory(consumer.proc.pid)
    try:
        started = time.monotonic()
        while not moto.requests_by(key).get("ReceiveMessage"):  # first receive: it is polling
            _check(consumer, log, started, 90, "no ReceiveMessage")
            time.sleep(0.2)
        ready_s = time.monotonic() - started
        memory.start()
        send_paced(sqs, url, encode, warmup, rate)
        _wait_handled(sqs, url, record, warmup, consumer, log, timeout=warmup / rate + 60)
        time.sleep(0.5)
        requests_before = moto.requests_by(key)
        cpu_before = tree_cpu(consumer.proc.pid)
        began = time.monotonic()
        send_paced(sqs, url, encode, messages, rate, first=warmup)
        _wait_handled(sqs, url, record, warmup + messages, consumer, log, timeout=messages / rate + 120)
        cpu_after = tree_cpu(consumer.proc.pid)
        elapsed = time.monotonic() - began
        requests_after = moto.requests_by(key)
    finally:
        memory.stop()
        consumer.stop()
    by_action = {
        action: requests_after[action] - requests_before.get(action, 0)
        for action in requests_after
        if requests_after[action] - requests_before.get(action, 0)
    }
    handled = {n: times for n, times in read_record(record).items() if n >= warmup}
    latencies = [times[0] for times in handled.values()]
    return {
        "cpu_ms_per_message": round((cpu_after - cpu_before) * 1000 / messages, 4),
        "requests_per_message": round(sum(by_action.values()) / messages, 4),
        "requests_by_action": by_action,
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "latency_p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "peak_rss_mb": round(memory.peak_rss / MB, 1),
        "peak_pss_mb": round(memory.peak_pss / MB, 1),
        "processes": memory.peak_processes,
        "handled": len(handled),
        "handled_twice": sum(len(times) > 1 for times in handled.values()),
        "seconds": round(elapsed, 1),
        "first_receive_s": round(ready_s, 2),
    }


def _check(consumer: ConsumerProcess, log: Path, started: float, timeout: float, what: str) -> None:
    if not consumer.alive():
        raise RuntimeError(f"exited with {consumer.proc.returncode}: {_tail(log)}")
    if time.monotonic() - started > timeout:
        raise RuntimeError(f"{what} within {timeout:.0f}s: {_tail(log)}")


def _wait_handled(
    sqs: Any, url: str, record: Path, count: int, consumer: ConsumerProcess, log: Path, timeout: float
) -> None:
    """Until `count` messages were handled and nothing is left on the queue (deletes done)."""
    started = time.monotonic()
    while len(read_record(record)) < count or queue_total(sqs, url):
        if not consumer.alive() or time.monotonic() - started > timeout:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            what = (
                f"{len(read_record(record))} of {count} messages handled, "
                f"{attrs['ApproximateNumberOfMessages']} visible and "
                f"{attrs['ApproximateNumberOfMessagesNotVisible']} in flight on the queue"
            )
            _check(consumer, log, started, timeout, what)
        time.sleep(0.1)


def _tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip()[:300] for line in text[-lines:]) or "(empty log)"


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric figure over the runs."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {k: round(statistics.median(r[k] for r in runs), 4) for k in keys}
