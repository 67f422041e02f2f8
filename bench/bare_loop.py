"""The baseline: the loop anyone writes with boto3 (receive ten, handle, delete_message_batch).

`python -m bench.bare_loop --endpoint URL --queue URL --counters FILE`; runs until SIGTERM.
It asks SQS for the same attributes sqs-poller does, so the comparison measures the framework,
not the payload. Counters (receives, deletes, messages) are kept in a memory-mapped file.
"""

from __future__ import annotations

import argparse
import mmap
import signal
import struct
import sys

import boto3

from bench.handlers import noop

COUNTERS = struct.Struct("<qqq")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--counters", required=True)
    parser.add_argument("--wait", type=int, default=20)
    args = parser.parse_args(argv)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))

    with open(args.counters, "r+b") as fh:
        counters = mmap.mmap(fh.fileno(), COUNTERS.size)
    client = boto3.session.Session().client("sqs", region_name="us-east-1", endpoint_url=args.endpoint)
    receives = deletes = handled = 0
    print("ready", flush=True)
    while not stopping:
        try:
            messages = client.receive_message(
                QueueUrl=args.queue,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=args.wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        except InterruptedError:
            continue
        receives += 1
        if messages:
            for message in messages:
                noop(message)
            client.delete_message_batch(
                QueueUrl=args.queue,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
            )
            deletes += 1
            handled += len(messages)
        COUNTERS.pack_into(counters, 0, receives, deletes, handled)
    return 0


def read_counters(path: str) -> tuple[int, int, int]:
    with open(path, "rb") as fh:
        return COUNTERS.unpack(fh.read(COUNTERS.size))


def new_counters(path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(bytes(COUNTERS.size))


if __name__ == "__main__":
    sys.exit(main())
