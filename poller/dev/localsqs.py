"""An embedded SQS-compatible endpoint on loopback (moto's server), for the demo and tests."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.request
from typing import Any

from poller.errors import PollerError

LOCAL_REGION = "us-east-1"


_receive_lock = threading.Lock()


def make_receives_atomic() -> None:
    """moto scans and marks messages without a lock, so two concurrent receives can both get
    the same message; real SQS never hands one message to two receivers inside its visibility
    timeout. Serialise the scan (the long-poll wait stays outside the lock), and let a FIFO
    group whose messages are visible again come back in order (`unpend_visible`)."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.receive_message
    if getattr(original, "_atomic", False):
        return

    def receive_message(self, queue_name, count, wait_seconds_timeout, visibility_timeout, *args, **kwargs):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with _receive_lock:
                unpend_visible(self.get_queue(queue_name))
                result = original(self, queue_name, count, 0, visibility_timeout, *args, **kwargs)
            left = deadline - time.monotonic()
            if result or left <= 0:
                return result
            began = time.monotonic()
            self.get_queue(queue_name).wait_for_messages(min(1.0, left))
            if time.monotonic() - began < 0.01:  # visible but not receivable (FIFO group busy)
                time.sleep(min(0.05, max(left, 0)))

    receive_message._atomic = True  # type: ignore[attr-defined]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


def unpend_visible(queue: Any) -> None:
    """moto drops a message that is visible again from its in-flight set only when its scan
    reaches it, and skips a FIFO group while any of its messages is in that set: when several
    of a group come back at once it hands out the last of them first (m5, then m2, m3, m4).
    Drop them all before the scan, so a group comes back in order, as on SQS."""
    for message in [m for m in queue.pending_messages if m.visible]:
        queue.pending_messages.discard(message)


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
        make_receives_atomic()
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


def main() -> None:
    """`python -m poller.dev.localsqs [PORT]`: the endpoint in its own process, until SIGTERM."""
    import signal
    import sys

    server = LocalSqs(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    server.start()
    print(server.endpoint_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
