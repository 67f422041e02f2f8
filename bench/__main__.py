"""`make bench`: sqs-poller's overhead, request cost, latency, concurrency, memory and start-up,
measured side by side with a bare boto3 loop against moto's SQS server on loopback.

Figures, never timed assertions. Sizes come from the environment (defaults in brackets):
BENCH_MESSAGES [1500] at BENCH_RATE [50 msg/s] in BENCH_RUNS [5] rounds for CPU (side by side;
the handler styles take 2000 at 100 msg/s, 3 runs, with the same three overriding),
BENCH_SOAK [20000] messages and BENCH_SOAK_SECONDS [150] (the soak is cut to what fits),
BENCH_LATENCY_MESSAGES [300] at BENCH_LATENCY_RATE [20 msg/s], BENCH_IO_SECONDS [10],
BENCH_BACKLOG [300] x BENCH_BACKLOG_ROUNDS [3] for requests at saturation.
`python -m bench --quick` runs everything small, to check the bench itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    REPO,
    BareLoop,
    Daemon,
    Feeder,
    client,
    compile_tree,
    descendants,
    memory,
    new_queues,
    preload,
    requests_total,
    send_paced,
    wait_drained,
    write_config,
)
from bench.kms import measure_kms
from bench.server import MotoProcess

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
MB = 1024 * 1024


def setting(name: str, default: float, quick: float) -> float:
    return float(os.environ.get(name, quick if QUICK else default))


QUICK = False
SHALLOW = 30  # messages kept visible by the feeder: moto's receive slows ~1 ms per message queued
_PROFILE_ENV: dict[str, str] = {}


# --- 1 and 2: CPU per message, requests per message ------------------------------------------


STYLE_HANDLERS = {
    "message": {"target": "bench.handlers:noop"},
    "lambda": {"target": "bench.handlers:lambda_noop", "style": "lambda", "batch_size": 10},
}


def cpu_run(
    moto: MotoProcess,
    kind: str,
    workdir: Path,
    messages: int,
    rate: float,
    processes: int = 1,
    style: str = "message",
) -> dict[str, Any]:
    """One consumer, fresh queue, paced traffic: CPU and requests of the tree per message."""
    sqs = client(moto.endpoint_url)
    url, dlq = new_queues(sqs)
    if kind.startswith("sqs-poller"):
        config = write_config(
            workdir,
            moto.endpoint_url,
            url,
            dlq,
            STYLE_HANDLERS[style]["target"],
            workers={"processes": processes},
            handler=STYLE_HANDLERS[style],
        )
        consumer: Any = Daemon(config, workdir, env=_PROFILE_ENV).start()

        def requests() -> float:
            return requests_total(consumer.scrape())
    else:
        consumer = BareLoop(moto.endpoint_url, url, workdir).start()
        requests = consumer.requests
    try:
        ready = consumer.wait_ready()
        send_paced(sqs, url, min(500, messages // 4), rate)  # warm-up: imports, connections, caches
        wait_drained(sqs, url)
        time.sleep(0.5)
        requests_before = requests()
        cpu_before = consumer.cpu()
        started = time.monotonic()
        send_paced(sqs, url, messages, rate)
        wait_drained(sqs, url, interval=0.05)
        cpu_after = consumer.cpu()
        elapsed = time.monotonic() - started
        requests_after = requests()
        pids = consumer.workers() if kind.startswith("sqs-poller") else [consumer.pid]
        peak = max(memory(p).get("VmHWM", 0) for p in pids)
        tree = sum(memory(p).get("VmRSS", 0) for p in descendants(consumer.pid))
    finally:
        consumer.stop(wake=lambda: preload(sqs, url, 40))
    return {
        "cpu_ms_per_message": round((cpu_after - cpu_before) * 1000 / messages, 4),
        "requests_per_message": round((requests_after - requests_before) / messages, 4),
        "peak_rss_mb": round(peak / MB, 1),
        "tree_rss_mb": round(tree / MB, 1),  # every process of the consumer, at the end
        "ready_s": round(ready, 3),  # start to READY=1 (0 for the bare loop)
        "seconds": round(elapsed, 1),
    }


def bench_cpu(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """The bare loop, sqs-poller with one process and with two, run at the same time (each on its
    own queue, one paced producer): whatever else the machine does in a round hits all three, so
    each round's ratios are paired; the ratios are the medians of the rounds' own ratios (run one
    after another, a consumer's CPU a message moved +-10 % between runs on this machine)."""
    from bench.paired import BARE, side_by_side

    messages = int(setting("BENCH_MESSAGES", 1500, 300))
    rate = setting("BENCH_RATE", 50, 50)
    runs = int(setting("BENCH_RUNS", 5, 1))
    daemons = {"sqs-poller": (REPO, 1), "sqs-poller 2 processes": (REPO, 2)}
    rounds: list[dict[str, dict[str, float]]] = []
    for n in range(runs):
        rounds.append(side_by_side(moto, workdir, daemons, messages, rate, flip=n % 2 == 1))
        print(f"  cpu round {n + 1}/{runs}: {rounds[-1]}", file=sys.stderr)
    out: dict[str, Any] = {"messages": messages, "rate": rate, "runs": runs, "side_by_side": True}
    for kind in (BARE, *daemons):
        rows = [r[kind] for r in rounds]
        out[kind] = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        out[kind]["all_runs"] = rows
    for kind in daemons:
        ratios = [r[kind]["cpu_ms_per_message"] / r[BARE]["cpu_ms_per_message"] for r in rounds]
        out[kind]["cpu_ratio"] = round(statistics.median(ratios), 3)
        out[kind]["cpu_ratios"] = [round(x, 3) for x in ratios]
    two_vs_one = [
        r["sqs-poller 2 processes"]["cpu_ms_per_message"] / r["sqs-poller"]["cpu_ms_per_message"]
        for r in rounds
    ]
    out["two_vs_one"] = round(statistics.median(two_vs_one), 3)
    return out


def bench_styles(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """CPU per message of the lambda style (an unchanged Lambda handler fed Lambda's SQS event)
    against the message style, one process each, interleaved."""
    messages = int(setting("BENCH_MESSAGES", 2000, 300))
    rate = setting("BENCH_RATE", 100, 100)
    runs = int(setting("BENCH_RUNS", 3, 1))
    results: dict[str, list[dict[str, Any]]] = {"message": [], "lambda": []}
    for n in range(runs):
        for style in results:
            results[style].append(cpu_run(moto, "sqs-poller", workdir, messages, rate, 1, style))
            print(f"  style run {n + 1}/{runs} {style}: {results[style][-1]}", file=sys.stderr)
    out: dict[str, Any] = {"messages": messages, "rate": rate, "runs": runs}
    for style, rows in results.items():
        out[style] = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    out["lambda_ratio"] = round(out["lambda"]["cpu_ms_per_message"] / out["message"]["cpu_ms_per_message"], 3)
    return out


# --- 2 and 5: saturation and the soak ---------------------------------------------------------


def bench_soak(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """The daemon on a queue kept shallow but never empty: throughput, requests per message,
    and worker RSS across the soak after a warm-up."""
    soak = int(setting("BENCH_SOAK", 20000, 1000))
    budget = setting("BENCH_SOAK_SECONDS", 150, 30)
    warmup = int(setting("BENCH_SOAK_WARMUP", 2000, 300))
    sqs = client(moto.endpoint_url)
    url, dlq = new_queues(sqs)
    config = write_config(workdir, moto.endpoint_url, url, dlq, "bench.handlers:noop")
    daemon = Daemon(config, workdir).start()
    feeder = Feeder(moto.endpoint_url, url, depth=SHALLOW, interval=0.05)
    note = ""
    try:
        daemon.wait_ready()
        feeder.start()
        warm_started = time.monotonic()
        deleted = _wait_deleted(daemon, warmup, timeout=budget)
        warm_rate = deleted / (time.monotonic() - warm_started)
        if soak / warm_rate > budget:
            note = (
                f"the {soak}-message soak would take {soak / warm_rate:.0f}s at moto's "
                f"{warm_rate:.0f} msg/s; measured {int(warm_rate * budget)} messages instead"
            )
            soak = int(warm_rate * budget)
        workers = daemon.workers()
        metrics = daemon.scrape()
        rss_before = {p: memory(p)["VmRSS"] for p in workers}
        requests_before = requests_total(metrics)
        deleted_before = metrics.get('sqs_poller_messages_total{outcome="deleted"}', 0)
        started = time.monotonic()
        _wait_deleted(daemon, deleted_before + soak, timeout=budget * 2)
        elapsed = time.monotonic() - started
        metrics = daemon.scrape()
        after = {p: memory(p) for p in workers}
        handled = metrics['sqs_poller_messages_total{outcome="deleted"}'] - deleted_before
        requests = requests_total(metrics) - requests_before
        restarts = metrics.get("sqs_poller_worker_restarts_total", 0)
    finally:
        feeder.stop()
        daemon.stop(wake=lambda: None)
    growth = max((after[p]["VmRSS"] - rss_before[p]) / rss_before[p] for p in workers)
    return {
        "messages": int(handled),
        "warmup": warmup,
        "note": note,
        "throughput_per_s": round(handled / elapsed, 1),
        "requests_per_message": round(requests / handled, 4),
        "worker_rss_mb_after_warmup": [round(rss_before[p] / MB, 1) for p in workers],
        "worker_rss_mb_after_soak": [round(after[p]["VmRSS"] / MB, 1) for p in workers],
        "worker_peak_rss_mb": max(round(after[p]["VmHWM"] / MB, 1) for p in workers),
        "rss_growth_pct": round(growth * 100, 2),
        "worker_restarts": restarts,
    }


def _wait_deleted(daemon: Daemon, count: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        deleted = daemon.scrape().get('sqs_poller_messages_total{outcome="deleted"}', 0)
        if deleted >= count:
            return deleted
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {deleted} of {count} messages deleted within {timeout}s")
        time.sleep(0.5)


def bench_saturation(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """A backlog waiting before the daemon starts, so every receive can be full: requests per
    message from sqs_poller_sqs_requests_total once it is drained."""
    backlog = int(setting("BENCH_BACKLOG", 300, 200))
    rounds = int(setting("BENCH_BACKLOG_ROUNDS", 3, 1))
    sqs = client(moto.endpoint_url)
    per_message = []
    for _ in range(rounds):
        url, dlq = new_queues(sqs)
        preload(sqs, url, backlog)
        config = write_config(workdir, moto.endpoint_url, url, dlq, "bench.handlers:noop")
        daemon = Daemon(config, workdir).start()
        try:
            daemon.wait_ready()
            wait_drained(sqs, url, interval=0.2)
            metrics = daemon.scrape()
        finally:
            daemon.stop(wake=lambda: None)
        requests: dict[str, float] = {}
        for key, value in metrics.items():  # by action, every queue and outcome
            if key.startswith("sqs_poller_sqs_requests_total{") and "queue=" in key:
                action = key.split('"')[1]
                requests[action] = requests.get(action, 0.0) + value
        per_message.append(round(sum(requests.values()) / backlog, 4))
    return {
        "backlog": backlog,
        "rounds": per_message,
        "requests_per_message": statistics.median(per_message),
        "last_round_requests": requests,
    }


# --- 3: latency -------------------------------------------------------------------------------


def bench_latency(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """Light load, one message at a time: send -> handler start."""
    messages = int(setting("BENCH_LATENCY_MESSAGES", 300, 60))
    rate = setting("BENCH_LATENCY_RATE", 20, 20)
    sqs = client(moto.endpoint_url)
    url, dlq = new_queues(sqs)
    record = workdir / "latency.txt"
    config = write_config(workdir, moto.endpoint_url, url, dlq, "bench.handlers:stamp")
    daemon = Daemon(config, workdir, {"BENCH_RECORD": str(record)}).start()
    try:
        daemon.wait_ready()
        next_at = time.monotonic()
        for _ in range(messages):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"t": time.time()}))
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        wait_drained(sqs, url)
    finally:
        daemon.stop(wake=lambda: None)
    latencies = sorted(float(x) for x in record.read_text().split())
    return {
        "messages": len(latencies),
        "rate": rate,
        "p50_ms": round(_percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


def _percentile(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


# --- 4: an I/O-bound handler ------------------------------------------------------------------


def bench_io(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """A 100 ms handler on a queue kept shallow: throughput against processes x concurrency / 0.1 s.
    A slot is idle from its handler's end until the next receive returns, so the driver also
    times moto's ReceiveMessage round trip meanwhile."""
    seconds = setting("BENCH_IO_SECONDS", 10, 5)
    processes, concurrency = 2, 10
    sqs = client(moto.endpoint_url)
    url, dlq = new_queues(sqs)
    config = write_config(
        workdir,
        moto.endpoint_url,
        url,
        dlq,
        "bench.handlers:sleep_100ms",
        workers={"processes": processes, "concurrency": concurrency},
    )
    daemon = Daemon(config, workdir).start()
    feeder = Feeder(moto.endpoint_url, url, depth=SHALLOW, interval=0.05)
    probe_url, _ = new_queues(sqs)
    preload(sqs, probe_url, 10)
    try:
        daemon.wait_ready()
        feeder.start()
        time.sleep(3)  # warm-up
        before, started = daemon.scrape(), time.monotonic()
        round_trips = []
        while time.monotonic() - started < seconds:
            asked = time.monotonic()
            sqs.receive_message(QueueUrl=probe_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            round_trips.append(time.monotonic() - asked)
            time.sleep(0.25)
        after, ended = daemon.scrape(), time.monotonic()
    finally:
        feeder.stop()
        daemon.stop(wake=lambda: None)
    key = 'sqs_poller_messages_total{outcome="deleted"}'
    throughput = (after[key] - before[key]) / (ended - started)
    ideal = processes * concurrency / 0.1
    return {
        "processes": processes,
        "concurrency": concurrency,
        "throughput_per_s": round(throughput, 1),
        "ideal_per_s": ideal,
        "efficiency": round(throughput / ideal, 3),
        "slot_idle_ms_per_message": round((processes * concurrency / throughput - 0.1) * 1000, 1),
        "moto_receive_round_trip_ms_p50": round(statistics.median(round_trips) * 1000, 1),
    }


def bench_async_io(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """One worker at concurrency 200 with a 100 ms I/O handler, async def on the event loop
    against the same handler on 200 threads. moto cannot serve 2000 msg/s, so the worker runs
    in this process on an in-memory SQS whose every receive takes a real SQS round trip
    (BENCH_RTT_MS, default 20): throughput against the bound concurrency / (0.1 s + round trip)."""
    from prometheus_client import CollectorRegistry

    from bench.handlers import sleep_100ms, sleep_100ms_async
    from poller.configload import build_config
    from poller.daemon.metrics import Metrics
    from poller.daemon.worker import Worker
    from poller.dev.memsqs import MemorySqs
    from poller.handlers.load import LoadedHandler

    seconds = setting("BENCH_IO_SECONDS", 10, 5)
    rtt = setting("BENCH_RTT_MS", 20, 20) / 1000
    concurrency = 200
    bound = concurrency / (0.1 + rtt)
    out: dict[str, Any] = {"concurrency": concurrency, "processes": 1, "round_trip_ms": rtt * 1000}
    for kind, handle in (("async", sleep_100ms_async), ("threads", sleep_100ms)):
        sqs = MemorySqs(round_trip=rtt, refill=lambda n: ["{}"] * 10 * n)
        raw = {
            "queue": {
                "url": "https://sqs.us-east-1.amazonaws.com/1/bench",
                "dlq_url": "https://sqs.us-east-1.amazonaws.com/1/bench-dlq",
                "wait_time_seconds": 0,
                "visibility_timeout": 60,
            },
            "workers": {"processes": 1, "concurrency": concurrency},
            "handler": {"target": "bench.handlers:noop"},
            "metrics": {"listen": ""},
            "logging": {"level": "warning"},
        }
        worker = Worker(
            build_config(raw, {}),
            sqs=sqs,  # type: ignore[arg-type]
            metrics=Metrics(CollectorRegistry()),
            handler=LoadedHandler(handle, lambda: None, kind),
        )
        worker.initialize()
        warm = time.monotonic() + 2
        while time.monotonic() < warm:
            worker.loop()
        before, started, cpu0 = len(sqs.deleted), time.monotonic(), time.process_time()
        while time.monotonic() - started < seconds:
            worker.loop()
        done, elapsed, cpu = len(sqs.deleted) - before, time.monotonic() - started, time.process_time() - cpu0
        worker.begin_stop("bench over")
        worker.shutdown()
        out[kind] = {
            "throughput_per_s": round(done / elapsed, 1),
            "bound_per_s": round(bound, 1),
            "of_bound": round(done / elapsed / bound, 3),
            "cpu_ms_per_message": round(cpu * 1000 / max(done, 1), 3),
        }
    return out


# --- 6: start-up ------------------------------------------------------------------------------


def bench_ready(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    runs = int(setting("BENCH_READY_RUNS", 5, 1))
    sqs = client(moto.endpoint_url)
    times = []
    for _ in range(runs):
        url, dlq = new_queues(sqs)  # the wake-up messages stay behind, released
        daemon = Daemon(write_config(workdir, moto.endpoint_url, url, dlq, "bench.handlers:noop"), workdir)
        daemon.start()
        try:
            times.append(daemon.wait_ready())
        finally:
            daemon.stop(wake=lambda url=url: preload(sqs, url, 20))
    return {"runs": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3)}


# --- the table --------------------------------------------------------------------------------


def bench_kms(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    return measure_kms(moto.endpoint_url, 200 if QUICK else 5000)


def table(r: dict[str, Any]) -> str:
    cpu, sat, soak, lat, io, ready = (r[k] for k in ("cpu", "saturation", "soak", "latency", "io", "ready"))
    bare, ours, two = cpu["bare boto3 loop"], cpu["sqs-poller"], cpu["sqs-poller 2 processes"]
    bound = 0.1 / (0.1 + io["moto_receive_round_trip_ms_p50"] / 1000)
    two_vs_one = cpu.get("two_vs_one") or two["cpu_ms_per_message"] / ours["cpu_ms_per_message"]
    nan = float("nan")

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISS"

    rows = [
        ("Figure", "bare boto3 loop", "sqs-poller", "target", ""),
        (
            f"CPU per message, ms, process tree (paced {cpu['rate']:.0f} msg/s, one poller each"
            + (", run side by side; median of the rounds' ratios)" if cpu.get("side_by_side") else ")"),
            f"{bare['cpu_ms_per_message']:.3f}",
            f"{ours['cpu_ms_per_message']:.3f} ({ours['cpu_ratio']:.2f}x)",
            "<= 1.00x",
            mark(ours["cpu_ratio"] <= 1.0),
        ),
        (
            "  the same, sqs-poller with 2 worker processes (against 1 process)",
            "",
            f"{two['cpu_ms_per_message']:.3f} ({two['cpu_ratio']:.2f}x; {two_vs_one:.2f} of 1 process)",
            "<= 1.10 of 1",
            mark(two_vs_one <= 1.10),
        ),
        (
            f"SQS requests per message (paced {cpu['rate']:.0f} msg/s; 1 / 2 processes)",
            f"{bare['requests_per_message']:.3f}",
            f"{ours['requests_per_message']:.3f} / {two['requests_per_message']:.3f}",
            "2 processes <= 0.25",
            mark(two["requests_per_message"] <= 0.25),
        ),
        (
            f"SQS requests per message at saturation ({sat['backlog']}-message backlog)",
            "",
            f"{sat['requests_per_message']:.3f}",
            "<= 0.22 (floor 0.2)",
            mark(sat["requests_per_message"] <= 0.22),
        ),
        (
            f"SQS requests per message, shallow queue kept fed ({soak['throughput_per_s']:.0f} msg/s)",
            "",
            f"{soak['requests_per_message']:.3f}",
            "",
            "",
        ),
        (
            f"Latency send -> handler start, p50 / p99, ms ({lat['rate']:.0f} msg/s)",
            "",
            f"{lat['p50_ms']:.1f} / {lat['p99_ms']:.1f}",
            "p50 < 50",
            mark(lat["p50_ms"] < 50),
        ),
        (
            f"100 ms I/O handler: msg/s / ideal ({io['processes']} x {io['concurrency']} / 0.1 s)",
            "",
            f"{io['throughput_per_s']:.0f} / {io['ideal_per_s']:.0f} = {io['efficiency']:.2f}",
            ">= 0.9",
            mark(io["efficiency"] >= 0.9),
        ),
        (
            "  slot idle per message / moto ReceiveMessage round trip, ms",
            "",
            f"{io['slot_idle_ms_per_message']:.1f} / {io['moto_receive_round_trip_ms_p50']:.1f}",
            "",
            "",
        ),
        (
            "  bound for any consumer that receives only into free slots: 0.1 / (0.1 + round trip)",
            "",
            f"{bound:.2f} (reached {io['efficiency'] / bound:.0%} of it)",
            "",
            "",
        ),
        (
            "Peak RSS per process, MB (sqs-poller: per worker, over the soak)",
            f"{bare['peak_rss_mb']:.1f}",
            f"{soak['worker_peak_rss_mb']:.1f} per worker",
            "<= 45",
            mark(soak["worker_peak_rss_mb"] <= 45),
        ),
        (
            "RSS of the whole process tree, MB, 1 worker process (supervisor + worker + helpers)",
            f"{bare.get('tree_rss_mb', nan):.1f}",  # (results from before this figure: nan)
            f"{ours.get('tree_rss_mb', nan):.1f}",
            "<= 90",
            mark(ours.get("tree_rss_mb", nan) <= 90),
        ),
        (
            f"Worker RSS growth over a {soak['messages']}-message soak after warm-up",
            "",
            f"{soak['rss_growth_pct']:.2f} %",
            "< 5 %",
            mark(soak["rss_growth_pct"] < 5),
        ),
        (
            "Start to READY=1, s (median), 2 processes",
            "",
            f"{ready['median_s']:.3f}",
            "< 0.5",
            mark(ready["median_s"] < 0.5),
        ),
    ]
    if "styles" in r:
        st = r["styles"]
        rows.append(
            (
                "CPU per message, ms: lambda style (Lambda's SQS event) / message style, 1 process",
                "",
                f"{st['lambda']['cpu_ms_per_message']:.3f} / {st['message']['cpu_ms_per_message']:.3f}"
                f" = {st['lambda_ratio']:.2f}x",
                "<= 1.10x",
                mark(st["lambda_ratio"] <= 1.10),
            )
        )
    if "async_io" in r:
        aio = r["async_io"]
        for kind in ("async", "threads"):
            rows.append(
                (
                    f"100 ms I/O, 1 worker x {aio['concurrency']}, {kind}: msg/s / bound "
                    f"c/(0.1+{aio['round_trip_ms']:.0f} ms round trip)",
                    "",
                    f"{aio[kind]['throughput_per_s']:.0f} / {aio[kind]['bound_per_s']:.0f}"
                    f" = {aio[kind]['of_bound']:.2f}",
                    ">= 0.9" if kind == "async" else "",
                    mark(aio[kind]["of_bound"] >= 0.9) if kind == "async" else "",
                )
            )
    if "kms" in r:
        kms = r["kms"]
        cached, uncached = kms["cached"], kms["uncached"]
        rows.append(
            (
                f"KMS calls per message, producer / one consumer process ({kms['messages']} messages)",
                f"{uncached['producer_calls_per_message']:.2f} / "
                f"{uncached['consumer_calls_per_message']:.2f} uncached",
                f"{cached['producer_calls_per_message']:.4f} / {cached['consumer_calls_per_message']:.4f}",
                "",
                "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def bench_queues(moto: MotoProcess, workdir: Path) -> dict[str, Any]:
    """Several queues in one daemon: no stall, priority, idle cost (bench/queues.py)."""
    from bench.queues import measure

    return measure(QUICK)


def main(argv: list[str] | None = None) -> int:
    global QUICK
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check the bench itself")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON results")
    parser.add_argument("--table", metavar="JSON", help="only print the table of earlier results")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated parts to run (ready,latency,io,async_io,cpu,styles,saturation,soak,kms,queues)",
    )
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    QUICK = args.quick
    compile_tree(REPO)
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so no daemon or moto outlives the bench.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    results: dict[str, Any] = {
        "when": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "quick": QUICK,
    }
    with tempfile.TemporaryDirectory(prefix="sqs-poller-bench-") as tmp, MotoProcess() as moto:
        workdir = Path(tmp)
        for name, run in (
            ("ready", bench_ready),
            ("latency", bench_latency),
            ("io", bench_io),
            ("async_io", bench_async_io),
            ("cpu", bench_cpu),
            ("styles", bench_styles),
            ("saturation", bench_saturation),
            ("soak", bench_soak),
            ("kms", bench_kms),
            ("queues", bench_queues),
        ):
            if args.only and name not in args.only.split(","):
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            results[name] = run(moto, workdir)
            print(f"bench: {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    results["seconds"] = round(time.monotonic() - started)
    if args.only:
        print(json.dumps({k: v for k, v in results.items() if k in args.only.split(",")}, indent=2))
        return 0
    results["table"] = table(results)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    if "queues" in results:
        from bench.queues import report

        print("\nSeveral queues in one daemon (bench.queues):\n" + report(results["queues"]))
    if results["soak"]["note"]:
        print(f"\nnote: {results['soak']['note']}")
    print(f"\n{results['seconds']}s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
