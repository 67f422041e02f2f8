"""sqs-workers: `python sqsworkers_app.py`, one process long-polling BENCH_QUEUE_NAME (20 s);
endpoint from AWS_ENDPOINT_URL_SQS (boto3's own setting). JSON codec."""

from __future__ import annotations

import os

from bench_record import record
from sqs_workers import SQSEnv

env = SQSEnv(codec="json")
queue = env.queue(os.environ["BENCH_QUEUE_NAME"])


@queue.processor("handle")
def handle(t: float, n: int) -> None:
    record(t, n)


if __name__ == "__main__":
    print("ready", flush=True)
    queue.process_queue(wait_second=20)
