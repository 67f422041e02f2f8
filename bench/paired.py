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
    new_queues,
    preload,
    send_batch,
    wait_drained,
    write_config,
)
from bench.server import MotoProcess


def send_paced_to_all(sqs: Any, urls: list[str], count: int, rate: float) -> None:
    """`count` messages to each queue, batches of ten, each queue at `rate` a second."""
    interval = 10 / rate
    next_at = time.monotonic()
    for start in range(0, count, 10):
        for url in urls:
            send_batch(sqs, url, ["{}"] * min(10, count - start))
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def one_round(
    moto: MotoProcess, workdir: Path, trees: dict[str, Path], messages: int, rate: float, flip: bool
) -> dict:
    """One round; `flip` starts and feeds the daemons in the reverse order (rounds alternate, so
    neither tree is always the one started, or fed, first)."""
    sqs = client(moto.endpoint_url)
    consumers: dict[str, Any] = {}
    urls: dict[str, str] = {}
    try:
        url, _ = new_queues(sqs)
        urls["bare boto3 loop"] = url
        consumers["bare boto3 loop"] = BareLoop(moto.endpoint_url, url, workdir).start()
        for name, repo in reversed(trees.items()) if flip else trees.items():
            url, dlq = new_queues(sqs)
            urls[name] = url
            harness.REPO = repo  # the daemon runs from that checkout (its cwd)
            config = write_config(
                workdir, moto.endpoint_url, url, dlq, "bench.handlers:noop", workers={"processes": 1}
            )
            consumers[name] = Daemon(config, workdir).start()
        for consumer in consumers.values():
            consumer.wait_ready()
        send_paced_to_all(sqs, list(urls.values()), min(300, messages // 4), rate)  # warm-up
        for url in urls.values():
            wait_drained(sqs, url)
        time.sleep(0.5)
        before = {name: consumer.cpu() for name, consumer in consumers.items()}
        send_paced_to_all(sqs, list(urls.values()), messages, rate)
        for url in urls.values():
            wait_drained(sqs, url, interval=0.05)
        return {
            name: (consumer.cpu() - before[name]) * 1000 / messages for name, consumer in consumers.items()
        }
    finally:
        for name, consumer in consumers.items():
            consumer.stop(wake=lambda url=urls.get(name): url and preload(sqs, url, 20))


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
            cpu = one_round(moto, Path(tmp), trees, messages, rate, flip=n % 2 == 1)
            bare = cpu["bare boto3 loop"]
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
