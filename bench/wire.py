"""`python -m bench.wire [CYCLES ROUNDS]`: CPU of one cycle of the worker's hot calls (a
ReceiveMessage of ten messages asking for every attribute, then their DeleteMessageBatch:
`bench.botocore_cost.cycle`) made three ways against moto's server in its own process: boto3's
default client, the worker's lean botocore client (`poller.sqs.make_client(lean=True)`), and
that client's `poller.sqswire.Wire`.
CPU is this thread's (`time.thread_time`) around the two calls only; the ways take turns, ROUNDS
times (6), CYCLES cycles each (30), and the medians are printed (ms a cycle)."""

from __future__ import annotations

import statistics
import sys

from bench.botocore_cost import cycle
from bench.harness import client as boto3_client
from bench.harness import new_queues
from bench.server import MotoProcess
from poller.sqs import make_client
from poller.sqswire import Wire


def main(argv: list[str]) -> int:
    cycles, rounds = (int(argv[0]), int(argv[1])) if len(argv) > 1 else (30, 6)
    with MotoProcess() as moto:
        producer = boto3_client(moto.endpoint_url)
        url, _ = new_queues(producer)
        lean = make_client(url, endpoint_url=moto.endpoint_url, attempts=1, validate=False, lean=True)
        wire = Wire.of(lean)
        assert wire is not None
        boto3 = boto3_client(moto.endpoint_url)
        ways = {"boto3 client": boto3, "lean botocore client": lean, "sqswire": wire}
        spent: dict[str, list[float]] = {name: [] for name in ways}
        for r in range(rounds):
            for name, sqs in ways.items() if r % 2 == 0 else reversed(ways.items()):
                spent[name].append(sum(cycle(sqs, producer, url) for _ in range(cycles)) / cycles * 1000)
    base = statistics.median(spent["boto3 client"])
    for name, values in spent.items():
        median = statistics.median(values)
        print(f"{name:<22} {median:.3f} ms a cycle = {median / base:.2f}x boto3's")
    print(f"({rounds} rounds of {cycles} cycles, medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
