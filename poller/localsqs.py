"""An embedded SQS-compatible endpoint on loopback (moto's server), for the demo and tests."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.request
from typing import Any

from poller.errors import PollerError

LOCAL_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_fake_credentials() -> None:
    """moto accepts any credentials; set them only where none are configured."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", LOCAL_REGION)


class LocalSqs:
    """moto's ThreadedMotoServer on 127.0.0.1: `with LocalSqs() as sqs: sqs.endpoint_url`."""

    def __init__(self, port: int | None = None):
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise PollerError(
                "the local SQS endpoint needs moto's server: pip install 'sqs-poller[demo]'"
            ) from None
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self) -> LocalSqs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        use_fake_credentials()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self._server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise PollerError(f"local SQS endpoint did not start on {self.endpoint_url}")

    def stop(self) -> None:
        self._server.stop()

    def client(self, service: str = "sqs") -> Any:
        import boto3

        return boto3.session.Session().client(
            service, region_name=LOCAL_REGION, endpoint_url=self.endpoint_url
        )


def create_queue_pair(
    client: Any, name: str, fifo: bool = False, max_receive_count: int = 10, visibility: int = 30
) -> tuple[str, str]:
    """A queue and its DLQ, with the redrive policy as the backstop. Returns (url, dlq_url)."""
    suffix = ".fifo" if fifo else ""
    fifo_attrs = {"FifoQueue": "true"} if fifo else {}
    dlq_url = client.create_queue(
        QueueName=f"{name}-dlq{suffix}",
        Attributes={**fifo_attrs, "MessageRetentionPeriod": "1209600"},
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = client.create_queue(
        QueueName=f"{name}{suffix}",
        Attributes={
            **fifo_attrs,
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    return url, dlq_url
