"""`python -m bench.paired [OTHER_CHECKOUT] [MESSAGES RATE ROUNDS]`: CPU per message of the bare
boto3 loop, this tree's daemon (one process) and, when given, another checkout's daemon, run
at the same time, each on its own queue fed at RATE msg/s (50) by one paced producer: whatever
else the machine does in a round hits all of them alike, so the ratios of one round are paired.
Rounds alternate which daemon is started and fed first. Run it with a checkout against itself
to see the spread that is noise.
MESSAGES (1500) each, ROUNDS (5) with fresh consumers; prints each round's ratios and their
medians. `bench.ab` runs consumers one after another instead (their absolute figures, and
memory and start-up)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench.harness as harness
from bench.harness import (
    BareLoop,
    Daemon,
    client,
    descendants,
    memory,
    new_queues,
    preload,
    requests_total,
    send_batch,
    wait_drained,
    write_config,
)
from bench.server import MotoProcess

BARE = "bare boto3 loop"
MB = 1024 * 1024


def send_paced_to_all(sqs: Any, urls: list[str], count: int, rate: float) -> None:
    """`count` messages to each queue, batches of ten, each queue at `rate` a second."""
    interval = 10 / rate
    next_at = time.monotonic()
    for start in range(0, count, 10):
        for url in urls:
            send_batch(sqs, url, ["{}"] * min(10, count - start))
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def side_by_side(
    moto: MotoProcess,
    workdir: Path,
    daemons: dict[str, tuple[Path, int]],
    messages: int,
    rate: float,
    flip: bool,
) -> dict[str, dict[str, float]]:
    """One round: the bare loop and each of `daemons` (name: (checkout, processes)) at once, each
    on its own queue, fed by one paced producer. `flip` starts and feeds the daemons in reverse
    order (rounds alternate, so none is always the one started, or fed, first). Per consumer: CPU
    and SQS requests (the daemon's own count, the bare loop's counters) a message, peak RSS of a
    worker (the bare loop's process), RSS of the whole tree, and start to READY=1."""
    sqs = client(moto.endpoint_url)
    consumers: dict[str, Any] = {}
    urls: dict[str, str] = {}
    try:
        url, _ = new_queues(sqs)
        urls[BARE] = url
        consumers[BARE] = BareLoop(moto.endpoint_url, url, workdir).start()
        for name, (repo, processes) in reversed(daemons.items()) if flip else daemons.items():
            url, dlq = new_queues(sqs)
            urls[name] = url
            harness.REPO = repo  # the daemon runs from that checkout (its cwd)
            config = write_config(
                workdir, moto.endpoint_url, url, dlq, "bench.handlers:noop", workers={"processes": processes}
            )
            consumers[name] = Daemon(config, workdir).start()
        ready = {name: consumer.wait_ready() for name, consumer in consumers.items()}
        send_paced_to_all(sqs, list(urls.values()), min(300, messages // 4), rate)  # warm-up
        for url in urls.values():
            wait_drained(sqs, url)
        time.sleep(0.5)
        before = {name: (c.cpu(), _requests(c)) for name, c in consumers.items()}
        send_paced_to_all(sqs, list(urls.values()), messages, rate)
        for url in urls.values():
            wait_drained(sqs, url, interval=0.05)
        out = {}
        for name, consumer in consumers.items():
            cpu, requests = consumer.cpu(), _requests(consumer)
            workers = consumer.workers() if isinstance(consumer, Daemon) else [consumer.pid]
            tree = sum(memory(p).get("VmRSS", 0) for p in descendants(consumer.pid))
            out[name] = {
                "cpu_ms_per_message": round((cpu - before[name][0]) * 1000 / messages, 4),
                "requests_per_message": round((requests - before[name][1]) / messages, 4),
                "peak_rss_mb": round(max(memory(p).get("VmHWM", 0) for p in workers) / MB, 1),
                "tree_rss_mb": round(tree / MB, 1),
                "ready_s": round(ready[name], 3),
            }
        return out
    finally:
        for name, consumer in consumers.items():
            consumer.stop(wake=lambda url=urls.get(name): url and preload(sqs, url, 20))


def _requests(consumer: Any) -> float:
    return requests_total(consumer.scrape()) if isinstance(consumer, Daemon) else consumer.requests()


def main(argv: list[str]) -> int:
    this = harness.REPO
    trees = {"sqs-poller this tree": this}
    if argv and not argv[0].replace(".", "").isdigit():
        trees["sqs-poller other"] = Path(argv.pop(0)).resolve()
    messages, rate, rounds = (
        (int(argv[0]), float(argv[1]), int(argv[2])) if len(argv) > 2 else (1500, 50.0, 5)
    )
    for repo in trees.values():
        harness.compile_tree(repo)
    ratios: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        for n in range(rounds):
            daemons = {name: (repo, 1) for name, repo in trees.items()}
            got = side_by_side(moto, Path(tmp), daemons, messages, rate, flip=n % 2 == 1)
            cpu = {name: figures["cpu_ms_per_message"] for name, figures in got.items()}
            bare = cpu[BARE]
            line = [f"bare {bare:.3f} ms"]
            for name in trees:
                ratios[name].append(cpu[name] / bare)
                line.append(f"{name} {cpu[name]:.3f} ms = {ratios[name][-1]:.3f}x")
            print(f"round {n + 1}: " + "; ".join(line), file=sys.stderr, flush=True)
    harness.REPO = this
    for name, values in ratios.items():
        each = ", ".join(f"{v:.3f}" for v in values)
        print(f"{name}: median {statistics.median(values):.3f}x the bare loop ({each})")
    if len(trees) == 2:
        pairs = [a / b for a, b in zip(*ratios.values(), strict=True)]
        each = ", ".join(f"{p:.3f}" for p in pairs)
        print(f"this tree / other, paired by round: median {statistics.median(pairs):.3f} ({each})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
