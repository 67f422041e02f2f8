"""PyQS: `pyqs QUEUE --concurrency 1`, run from this folder (PyQS imports the task by path);
endpoint from AWS_ENDPOINT_URL_SQS (boto3's own setting)."""

from __future__ import annotations

from bench_record import record


def handle(t: float, n: int) -> None:
    record(t, n)
