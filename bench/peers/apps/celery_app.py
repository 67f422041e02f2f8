"""Celery with kombu's SQS transport: `celery -A celery_app worker -Q QUEUE ...`.
Queue, endpoint and credentials come from BENCH_QUEUE_NAME / BENCH_QUEUE_URL and the AWS_*
environment; everything else is Celery's default except what SQS needs."""

from __future__ import annotations

import os
import urllib.parse

from bench_record import record
from celery import Celery

_endpoint = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL_SQS"])
_key, _secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
QUEUE = os.environ["BENCH_QUEUE_NAME"]

app = Celery("celery_app", broker=f"sqs://{_key}:{_secret}@{_endpoint.hostname}:{_endpoint.port}")
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    worker_enable_remote_control=False,  # no broadcast (SNS) queues on SQS
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH_MULTIPLIER", "10")),
    broker_transport_options={
        "region": "us-east-1",
        "is_secure": False,
        "wait_time_seconds": 20,
        "polling_interval": float(os.environ.get("BENCH_CELERY_POLLING_INTERVAL", "0")),
        "predefined_queues": {
            QUEUE: {"url": os.environ["BENCH_QUEUE_URL"], "access_key_id": _key, "secret_access_key": _secret}
        },
        # the same attributes every consumer asks for
        "fetch_message_attributes": {
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        },
    },
)


@app.task(name="bench.handle")
def handle(payload: dict) -> None:
    record(payload["t"], payload["n"])
