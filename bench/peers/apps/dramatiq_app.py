"""dramatiq with dramatiq-sqs: `dramatiq dramatiq_app --processes 1 --threads 8`.
The actor's queue is BENCH_QUEUE_NAME (created beforehand); endpoint from AWS_ENDPOINT_URL_SQS."""

from __future__ import annotations

import os

import dramatiq
from bench_record import record
from dramatiq_sqs import SQSBroker

broker = SQSBroker(region_name="us-east-1", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=os.environ["BENCH_QUEUE_NAME"], actor_name="handle", max_retries=0)
def handle(payload: dict) -> None:
    record(payload["t"], payload["n"])
