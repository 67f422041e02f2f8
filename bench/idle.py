"""`python -m bench.idle [OTHER_CHECKOUT] [SECONDS ROUNDS]`: CPU the daemon's tree (supervisor and
one worker) spends a second on an empty queue, long-polling against moto's server: this tree,
and another checkout's when given (e.g. `git worktree add ../before COMMIT`), in interleaved
rounds (default 20 s, 3 rounds); medians in ms of CPU a second. The kernel charges CPU in 10 ms
units, so longer runs read finer."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import bench.harness as harness
from bench.harness import Daemon, client, new_queues, preload, write_config
from bench.server import MotoProcess


def idle_cpu(moto: MotoProcess, workdir: Path, seconds: float) -> float:
    sqs = client(moto.endpoint_url)
    url, dlq = new_queues(sqs)
    config = write_config(
        workdir, moto.endpoint_url, url, dlq, "bench.handlers:noop", workers={"processes": 1}
    )
    daemon = Daemon(config, workdir).start()
    try:
        daemon.wait_ready()
        time.sleep(3)  # past start-up
        before = daemon.cpu()
        time.sleep(seconds)
        return (daemon.cpu() - before) / seconds * 1000
    finally:
        daemon.stop(wake=lambda: preload(sqs, url, 5))


def main(argv: list[str]) -> int:
    trees = {"this tree": harness.REPO}
    if argv and not argv[0].replace(".", "").isdigit():
        trees["other"] = Path(argv.pop(0)).resolve()
    seconds, rounds = (float(argv[0]), int(argv[1])) if len(argv) > 1 else (20.0, 3)
    results: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        for n in range(rounds):
            for name, repo in trees.items():
                harness.compile_tree(repo)
                harness.REPO = repo  # the daemon runs from that checkout
                results[name].append(idle_cpu(moto, Path(tmp), seconds))
                print(
                    f"round {n + 1}: {name} {results[name][-1]:.2f} ms a second", file=sys.stderr, flush=True
                )
    for name, values in results.items():
        print(f"{name}: {statistics.median(values):.2f} ms of CPU a second idle ({trees[name]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
