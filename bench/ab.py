"""`python -m bench.ab OTHER_CHECKOUT [MESSAGES RATE ROUNDS [PROCESSES]]`: CPU per message of this
tree's daemon against another checkout's (e.g. `git worktree add ../before COMMIT`), side by side
with a bare boto3 loop, in one interleaved run against one moto server; medians and x bare loop.
PROCESSES: the worker counts to run, comma separated (default 1,2)."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import bench.harness as harness
from bench.__main__ import cpu_run
from bench.server import MotoProcess


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    this, other = harness.REPO, Path(argv[0]).resolve()
    messages, rate, rounds = (
        (int(argv[1]), float(argv[2]), int(argv[3])) if len(argv) > 3 else (1500, 100.0, 3)
    )
    counts = [int(n) for n in argv[4].split(",")] if len(argv) > 4 else [1, 2]
    kinds = [("bare boto3 loop", this, 1)]
    for processes in counts:
        suffix = "" if processes == 1 else f", {processes} processes"
        kinds.append((f"sqs-poller this tree{suffix}", this, processes))
        kinds.append((f"sqs-poller other{suffix}", other, processes))
    runs: dict[str, list[dict]] = {kind: [] for kind, _, _ in kinds}
    harness.compile_tree(this)
    harness.compile_tree(other)
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        for n in range(rounds):
            for kind, repo, processes in kinds:
                harness.REPO = repo  # the daemon runs from that checkout (its cwd)
                consumer = "bare" if kind.startswith("bare") else "sqs-poller"
                runs[kind].append(cpu_run(moto, consumer, Path(tmp), messages, rate, processes))
                print(n, kind, runs[kind][-1], file=sys.stderr, flush=True)
    harness.REPO = this
    median = {k: {key: statistics.median(r[key] for r in v) for key in v[0]} for k, v in runs.items()}
    bare = median["bare boto3 loop"]["cpu_ms_per_message"]
    for figures in median.values():
        figures["x_bare"] = round(figures["cpu_ms_per_message"] / bare, 3)
    print(json.dumps({"messages": messages, "rate": rate, "rounds": rounds, "median": median}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
