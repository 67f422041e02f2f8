"""The fault-injecting proxy the hostile tests put in front of the SQS endpoint."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from tests.conftest import queue_total, receive_all
from tests.faultproxy import SQS_MAX_BYTES, FaultProxy


@pytest.fixture
def proxy(local_sqs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(local_sqs.endpoint_url) as running:
        yield running


def client(proxy: FaultProxy, read_timeout: float = 10) -> Any:
    """One request a call (no botocore retries), so counts are exact."""
    return boto3.session.Session().client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=proxy.endpoint_url,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout, connect_timeout=2),
    )


def test_forwards_every_action_and_counts_it(proxy, make_queues, sqs):
    # GIVEN a queue reached through the proxy
    url, _ = make_queues()
    via = client(proxy)

    # WHEN a message is sent and received through it
    via.send_message(QueueUrl=url, MessageBody="hello")
    got = via.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]

    # THEN the endpoint did both, and the proxy counted each action once
    assert [m["Body"] for m in got] == ["hello"]
    assert proxy.count("SendMessage") == 1 and proxy.count("ReceiveMessage") == 1


def test_fails_an_action_with_an_sqs_error_in_the_json_protocol(proxy, make_queues):
    # GIVEN receives fail with "queue does not exist", twice
    url, _ = make_queues()
    proxy.fail("ReceiveMessage", "AWS.SimpleQueueService.NonExistentQueue", status=400, times=2)
    via = client(proxy)

    # WHEN a client receives three times
    errors = []
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            via.receive_message(QueueUrl=url, WaitTimeSeconds=0)
        errors.append(caught.value.response)
    via.receive_message(QueueUrl=url, WaitTimeSeconds=0)

    # THEN botocore read the code and status as from SQS, and the third went through
    assert [e["Error"]["Code"] for e in errors] == ["AWS.SimpleQueueService.NonExistentQueue"] * 2
    assert errors[0]["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert proxy.count("ReceiveMessage") == 3 and proxy.faults["ReceiveMessage"] == 2


def test_fails_an_action_in_the_query_protocol_shape(proxy, make_queues):
    # GIVEN GetQueueAttributes fails with AccessDenied
    url, _ = make_queues()
    proxy.fail("GetQueueAttributes", "AccessDenied", status=403, message="not allowed")

    # WHEN a query-protocol request asks for it
    request = urllib.request.Request(
        proxy.endpoint_url + "/",
        data=f"Action=GetQueueAttributes&QueueUrl={url}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)

    # THEN the reply is SQS's XML error document
    body = caught.value.read().decode()
    assert caught.value.code == 403
    assert "<Code>AccessDenied</Code>" in body and "<Message>not allowed</Message>" in body


def test_delays_only_the_chosen_queue(proxy, make_queues):
    # GIVEN sends to one queue are delayed by a second
    slow_url, _ = make_queues()
    fast_url, _ = make_queues()
    proxy.delay("SendMessage", 1.0, queue=slow_url)
    via = client(proxy)

    # WHEN a message goes to each
    started = time.monotonic()
    via.send_message(QueueUrl=fast_url, MessageBody="a")
    fast = time.monotonic() - started
    via.send_message(QueueUrl=slow_url, MessageBody="b")
    slow = time.monotonic() - started - fast

    # THEN only the chosen queue's send waited
    assert slow >= 0.9 and fast < 0.9


def test_tarpit_accepts_and_never_answers(proxy, make_queues):
    # GIVEN one receive is tarpitted
    url, _ = make_queues()
    proxy.tarpit("ReceiveMessage", times=1)
    via = client(proxy, read_timeout=1)

    # WHEN a client with a 1 s read timeout receives, twice
    with pytest.raises(ReadTimeoutError):
        via.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    via.receive_message(QueueUrl=url, WaitTimeSeconds=0)

    # THEN the first timed out and the second was answered
    assert proxy.count("ReceiveMessage") == 2


def test_refuse_closes_the_listener_until_accept(proxy, make_queues):
    # GIVEN the proxy refuses connections
    url, _ = make_queues()
    via = client(proxy)
    proxy.refuse()

    # WHEN a client calls, then the proxy accepts again and it calls again
    with pytest.raises(EndpointConnectionError):
        via.get_queue_attributes(QueueUrl=url)
    proxy.accept()
    via.get_queue_attributes(QueueUrl=url)

    # THEN only the second reached the proxy
    assert proxy.count("GetQueueAttributes") == 1


def test_drop_reply_applies_the_request_and_reset_does_not(proxy, make_queues, sqs):
    # GIVEN one send whose reply is dropped, and one whose connection is reset
    url, _ = make_queues()
    via = client(proxy)
    proxy.drop_reply("SendMessage", times=1)

    # WHEN both are sent
    with pytest.raises(ConnectionClosedError):
        via.send_message(QueueUrl=url, MessageBody="applied")
    proxy.reset("SendMessage", times=1)
    with pytest.raises(ConnectionClosedError):
        via.send_message(QueueUrl=url, MessageBody="never applied")

    # THEN the first is on the queue though its sender saw an error; the second is not
    assert [m["Body"] for m in receive_all(sqs, url)] == ["applied"]


def test_enforces_sqs_size_limit_in_utf8_bytes_with_attributes(proxy, make_queues, sqs):
    # GIVEN bodies that fit moto's character count but not SQS's byte count
    url, _ = make_queues()
    via = client(proxy)
    two_byte = "é" * (SQS_MAX_BYTES // 2 + 1)  # under 1 Mi characters, over 1 MiB of UTF-8
    attribute = {"tag": {"DataType": "String", "StringValue": "xyz"}}  # 3 + 6 + 3 bytes
    exact = "a" * (SQS_MAX_BYTES - 12)

    # WHEN they are sent through the proxy
    with pytest.raises(ClientError) as too_big:
        via.send_message(QueueUrl=url, MessageBody=two_byte)
    with pytest.raises(ClientError) as with_attribute:
        via.send_message(QueueUrl=url, MessageBody=exact + "a", MessageAttributes=attribute)
    via.send_message(QueueUrl=url, MessageBody=exact, MessageAttributes=attribute)
    with pytest.raises(ClientError) as batch:
        via.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "1", "MessageBody": exact}, {"Id": "2", "MessageBody": "a" * 13}],
        )

    # THEN the oversized ones are refused as SQS refuses them, and only the exact fit arrived
    assert too_big.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert with_attribute.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert batch.value.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert queue_total(sqs, url) == 1
