"""`python -m bench.wire [CYCLES ROUNDS]`: CPU of one cycle of the worker's hot calls (a
ReceiveMessage of ten messages with every attribute, then their DeleteMessageBatch) made three
ways against moto's server in its own process: boto3's default client, the worker's lean
botocore client (`poller.sqs.make_client(lean=True)`), and that client's `poller.sqswire.Wire`.
CPU is this thread's (`time.thread_time`) around each cycle only; the ways take turns, ROUNDS
times (6), CYCLES cycles each (30), and the medians are printed (ms a cycle)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import client as boto3_client
from bench.harness import new_queues
from bench.server import MotoProcess
from poller.sqs import make_client
from poller.sqswire import Wire

ATTRIBUTES = {"trace": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793"}}


def cycle(sqs: Any, url: str) -> Callable[[], int]:
    def run() -> int:
        reply = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = reply.get("Messages", [])
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        return len(messages)

    return run


def main(argv: list[str]) -> int:
    cycles, rounds = (int(argv[0]), int(argv[1])) if len(argv) > 1 else (30, 6)
    with MotoProcess() as moto:
        producer = boto3_client(moto.endpoint_url)
        url, _ = new_queues(producer)
        lean = make_client(url, endpoint_url=moto.endpoint_url, attempts=1, validate=False, lean=True)
        wire = Wire.of(lean)
        assert wire is not None
        ways = {
            "boto3 client": cycle(boto3_client(moto.endpoint_url), url),
            "lean botocore client": cycle(lean, url),
            "sqswire": cycle(wire, url),
        }
        spent: dict[str, list[float]] = {name: [] for name in ways}
        body = '{"order": 1}'
        entries = [{"Id": str(n), "MessageBody": body, "MessageAttributes": ATTRIBUTES} for n in range(10)]
        for r in range(rounds):
            for name, run in ways.items() if r % 2 == 0 else reversed(ways.items()):
                cpu = 0.0
                for _ in range(cycles):
                    producer.send_message_batch(QueueUrl=url, Entries=entries)
                    started = time.thread_time()
                    got = run()
                    cpu += time.thread_time() - started
                    assert got == 10, got
                spent[name].append(cpu / cycles * 1000)
    base = statistics.median(spent["boto3 client"])
    for name, values in spent.items():
        median = statistics.median(values)
        print(f"{name:<22} {median:.3f} ms a cycle = {median / base:.2f}x boto3's")
    print(f"({rounds} rounds of {cycles} cycles, medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
