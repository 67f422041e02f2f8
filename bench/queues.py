"""`python -m bench.queues [--quick]`: several queues in one daemon, against moto's server.

- no stall: a low-priority queue's throughput beside an empty high-priority queue (20 s long
  polls), as a ratio of the same queue served alone;
- priority: the wait (send -> handler start) of a burst on a high-priority queue while a low one
  is backlogged with 0.2 s messages on four slots: p50 and p95;
- idle cost: process-tree RSS and CPU a second of one worker serving 10 empty queues against 1,
  and ReceiveMessage calls a minute per idle queue.
Figures, printed (and returned as a dict for `make bench`), never asserted."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Daemon, Feeder, client, memory, new_queues, preload, send_batch
from bench.server import MotoProcess
from poller.dev.localsqs import free_port

SHALLOW = 30  # messages the feeder keeps visible


def queues_config(workdir: Path, endpoint: str, queues: dict[str, dict[str, Any]], **workers: Any) -> Path:
    lines = [
        "[workers]",
        f"processes = {workers.get('processes', 1)}",
        f"concurrency = {workers.get('concurrency', 10)}",
        "shutdown_grace = 10",
        "[metrics]",
        f'listen = "127.0.0.1:{free_port()}"',
        "[logging]",
        'level = "info"',
    ]
    for name, keys in queues.items():
        handler = keys.pop("handler", "bench.handlers:noop")
        lines.append(f"[queues.{name}]")
        keys = {"endpoint_url": endpoint, "region": "us-east-1", "wait_time_seconds": 20, **keys}
        lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
        lines += [f"[queues.{name}.handler]", f'target = "{handler}"', "timeout = 60"]
    path = workdir / f"queues-{uuid.uuid4().hex[:6]}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def throughput(moto: MotoProcess, workdir: Path, count: int, with_empty_high: bool) -> float:
    sqs = client(moto.endpoint_url)
    low, low_dlq = new_queues(sqs)
    queues = {"low": {"url": low, "dlq_url": low_dlq}}
    if with_empty_high:
        high, high_dlq = new_queues(sqs)
        queues = {"high": {"url": high, "dlq_url": high_dlq, "priority": 10}, **queues}
    daemon = Daemon(queues_config(workdir, moto.endpoint_url, queues), workdir).start()
    try:
        daemon.wait_ready()
        time.sleep(1)
        feeder = Feeder(moto.endpoint_url, low, SHALLOW, count)  # moto slows as a queue deepens
        started = time.monotonic()
        feeder.start()
        while daemon.scrape().get('sqs_poller_messages_total{outcome="deleted"}', 0) < count:
            time.sleep(0.05)
        feeder.stop()
        return count / (time.monotonic() - started)
    finally:
        daemon.stop(wake=lambda: preload(sqs, low, 3))


def priority_waits(moto: MotoProcess, workdir: Path, burst: int) -> tuple[float, float]:
    sqs = client(moto.endpoint_url)
    (high, high_dlq), (low, low_dlq) = new_queues(sqs), new_queues(sqs)
    record = workdir / f"stamps-{uuid.uuid4().hex[:6]}.txt"
    queues = {
        "high": {"url": high, "dlq_url": high_dlq, "priority": 1, "handler": "bench.handlers:stamp"},
        "low": {"url": low, "dlq_url": low_dlq, "handler": "bench.handlers:sleep_200ms"},
    }
    config = queues_config(workdir, moto.endpoint_url, queues, concurrency=4)
    daemon = Daemon(config, workdir, env={"BENCH_RECORD": str(record)}).start()
    try:
        daemon.wait_ready()
        preload(sqs, low, 60)
        time.sleep(2)  # the low queue's backlog holds every slot
        for start in range(0, burst, 10):
            send_batch(sqs, high, [json.dumps({"t": time.time()})] * min(10, burst - start))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_lines(record)) < burst:
            time.sleep(0.05)
        waits = sorted(float(x) for x in _lines(record))
        return statistics.median(waits), waits[int(0.95 * (len(waits) - 1))]
    finally:
        daemon.stop(timeout=30)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def idle(moto: MotoProcess, workdir: Path, queues: int, seconds: float) -> dict[str, float]:
    sqs = client(moto.endpoint_url)
    tables = {}
    for n in range(queues):
        url, dlq = new_queues(sqs)
        tables[f"q{n}"] = {"url": url, "dlq_url": dlq}
    daemon = Daemon(queues_config(workdir, moto.endpoint_url, tables), workdir).start()
    try:
        daemon.wait_ready()
        time.sleep(3)
        before_cpu, before = daemon.cpu(), _receives(daemon)
        time.sleep(seconds)
        cpu = (daemon.cpu() - before_cpu) / seconds * 1000
        per_queue = (_receives(daemon) - before) / queues / seconds * 60
        rss = sum(memory(pid).get("VmRSS", 0) for pid in [daemon.pid, *daemon.workers()]) / 1024 / 1024
        return {"cpu_ms_per_s": cpu, "tree_rss_mb": rss, "receives_per_min_per_queue": per_queue}
    finally:
        daemon.stop(timeout=40)


def _receives(daemon: Daemon) -> float:
    return daemon.scrape().get('sqs_poller_sqs_requests_total{action="ReceiveMessage",outcome="ok"}', 0.0)


def measure(quick: bool = False) -> dict[str, Any]:
    count, burst, seconds = (100, 10, 10) if quick else (400, 20, 40)
    workdir = Path(tempfile.mkdtemp(prefix="bench-queues-"))
    moto = MotoProcess().start()
    try:
        alone = throughput(moto, workdir, count, False)
        beside = throughput(moto, workdir, count, True)
        p50, p95 = priority_waits(moto, workdir, burst)
        one, ten = idle(moto, workdir, 1, seconds), idle(moto, workdir, 10, seconds)
    finally:
        moto.stop()
    return {
        "no_stall": {"alone_msg_s": alone, "beside_empty_high_msg_s": beside, "ratio": beside / alone},
        "priority": {"burst": burst, "p50_s": p50, "p95_s": p95, "low_handler_s": 0.2},
        "idle": {"one_queue": one, "ten_queues": ten,
                 "rss_ratio": ten["tree_rss_mb"] / one["tree_rss_mb"]},
    }  # fmt: skip


def report(figures: dict[str, Any]) -> str:
    s, p, i = figures["no_stall"], figures["priority"], figures["idle"]
    one, ten = i["one_queue"], i["ten_queues"]
    return "\n".join(
        [
            f"no stall: low queue {s['beside_empty_high_msg_s']:.0f} msg/s beside an empty high-priority "
            f"queue, {s['alone_msg_s']:.0f} alone: ratio {s['ratio']:.2f} (target >= 0.9)",
            f"priority: a burst of {p['burst']} on the high queue waited p50 {p['p50_s']:.3f} s, "
            f"p95 {p['p95_s']:.3f} s (target < {p['low_handler_s'] + 1:.1f} s: one low handler plus 1 s)",
            f"idle: tree RSS {ten['tree_rss_mb']:.1f} MB with 10 queues, {one['tree_rss_mb']:.1f} MB with 1 "
            f"({i['rss_ratio']:.2f}x, target <= 1.15x); CPU {ten['cpu_ms_per_s']:.2f} against "
            f"{one['cpu_ms_per_s']:.2f} ms a second; {ten['receives_per_min_per_queue']:.1f} receives "
            "a minute per idle queue",
        ]
    )


def main(argv: list[str]) -> int:
    figures = measure(quick="--quick" in argv)
    print(report(figures))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
