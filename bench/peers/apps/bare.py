"""The loop anyone writes with boto3: receive ten (all attributes), handle, delete_message_batch.
`python bare.py QUEUE_URL`; endpoint and credentials from the environment; runs until SIGTERM."""

from __future__ import annotations

import signal
import sys

import boto3
from bench_record import handle_body


def main(url: str) -> int:
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    client = boto3.session.Session().client("sqs")
    print("ready", flush=True)
    while not stopping:
        try:
            messages = client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=20,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        except InterruptedError:
            continue
        if messages:
            for message in messages:
                handle_body(message["Body"])
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
