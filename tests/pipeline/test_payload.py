"""S3 payloads in AWS's Extended Client format: our step reads what AWS's client writes, AWS's
client reads what we write, and S3 failures become Poison or a retry as the contract says."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from poller.errors import ConfigError
from poller.message import Message, Poison
from poller.ops.offload import offload_if_large, offload_threshold, queue_max_message_size
from poller.pipeline.payload import (
    LEGACY_POINTER_CLASS,
    LEGACY_SIZE_ATTRIBUTE,
    POINTER_CLASS,
    SIZE_ATTRIBUTE,
    PayloadError,
    S3Payload,
    describe_pointer,
    resolve_body,
)
from poller.sqs import Sqs
from tests.messages import message

PEER = Path(__file__).parents[1] / "extended_client_peer.py"
TWO_MIB = 2 * 1024 * 1024


def big_body(size: int = TWO_MIB) -> str:
    """Text of exactly `size` UTF-8 bytes, multibyte characters included."""
    unit = "payload-ü€-"  # 14 bytes: 1, 2 and 3 byte characters
    count = size // len(unit.encode())
    return unit * count + "x" * (size - count * len(unit.encode()))


@pytest.fixture
def s3(local_sqs: Any) -> Any:
    return local_sqs.client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"payloads-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def peer(local_sqs: Any, command: str, url: str, bucket: str, *extra: str, body: bytes = b"") -> bytes:
    done = subprocess.run(
        [sys.executable, str(PEER), command, local_sqs.endpoint_url, url, bucket, *extra],
        input=body,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout


def receive_one(sqs: Any, url: str) -> Message:
    raw = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=1,
        WaitTimeSeconds=2,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )["Messages"][0]
    return Message.from_sqs(raw, url)


def pointer_message(bucket: str, key: str, cls: str = POINTER_CLASS, attr: str = SIZE_ATTRIBUTE) -> Message:
    body = json.dumps([cls, {"s3BucketName": bucket, "s3Key": key}])
    return message(body, message_attributes={attr: {"DataType": "Number", "StringValue": "10"}})


def test_a_2_mib_body_sent_by_aws_extended_client_reaches_the_handler_and_its_object_is_deleted(
    local_sqs: Any, sqs: Any, s3: Any, bucket: str, make_queues: Any
) -> None:
    # GIVEN a producer using AWS's own extended client sends a 2 MiB body
    url, _ = make_queues()
    body = big_body()
    peer(local_sqs, "send", url, bucket, body=body.encode())
    received = receive_one(sqs, url)
    pointer = describe_pointer(received.body, received.message_attributes)
    assert pointer is not None and pointer["size"] == TWO_MIB and pointer["format"] == "current"
    step = S3Payload(s3, delete_after_success=True)

    # WHEN our step resolves it, and the message is later deleted
    resolved = step.before(received)
    step.settled(received, "deleted")
    step.close()

    # THEN the handler saw exactly those bytes, without the size attribute; the object is gone
    assert resolved.body == body
    assert SIZE_ATTRIBUTE not in resolved.message_attributes
    assert received.message_attributes[SIZE_ATTRIBUTE]["StringValue"] == str(TWO_MIB)  # original untouched
    assert not exists(s3, pointer["bucket"], pointer["key"])


def test_our_offloaded_body_is_read_back_by_aws_extended_client(
    local_sqs: Any, sqs: Any, s3: Any, bucket: str, make_queues: Any
) -> None:
    # GIVEN a 2 MiB body offloaded by us and sent with a plain SQS client
    url, _ = make_queues()
    body = big_body()
    attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    threshold = offload_threshold(262144, queue_max_message_size(Sqs(sqs), url), bucket)
    sent_body, sent_attributes = offload_if_large(body, attributes, s3=s3, bucket=bucket, threshold=threshold)
    assert len(sent_body) < 200 and sent_attributes[SIZE_ATTRIBUTE]["StringValue"] == str(TWO_MIB)
    sqs.send_message(QueueUrl=url, MessageBody=sent_body, MessageAttributes=sent_attributes)

    # WHEN AWS's extended client receives it
    got = peer(local_sqs, "receive", url, bucket)

    # THEN it reads exactly the original bytes
    assert got == body.encode("utf-8")


def test_legacy_pointer_class_and_size_attribute_written_by_aws_client_resolve(
    local_sqs: Any, sqs: Any, s3: Any, bucket: str, make_queues: Any
) -> None:
    # GIVEN AWS's client in its legacy mode (MessageS3Pointer + SQSLargePayloadSize)
    url, _ = make_queues()
    body = big_body(300_000)
    peer(local_sqs, "send", url, bucket, "--legacy", body=body.encode())
    received = receive_one(sqs, url)
    assert LEGACY_POINTER_CLASS in received.body and LEGACY_SIZE_ATTRIBUTE in received.message_attributes

    # WHEN our step resolves it
    resolved = S3Payload(s3).before(received)

    # THEN the body is the original and neither size attribute is left
    assert resolved.body == body
    assert LEGACY_SIZE_ATTRIBUTE not in resolved.message_attributes


@pytest.mark.parametrize(
    ("cls", "attr"),
    [
        (POINTER_CLASS, LEGACY_SIZE_ATTRIBUTE),  # what the Java client 2.x writes by default
        (LEGACY_POINTER_CLASS, SIZE_ATTRIBUTE),
    ],
)
def test_every_mix_of_class_name_and_size_attribute_resolves(
    s3: Any, bucket: str, cls: str, attr: str
) -> None:
    s3.put_object(Bucket=bucket, Key="doc", Body=b"hello from java")
    resolved = S3Payload(s3).before(pointer_message(bucket, "doc", cls, attr))
    assert resolved.body == "hello from java"
    assert attr not in resolved.message_attributes


def test_a_missing_object_is_poison_naming_bucket_and_key(s3: Any, bucket: str) -> None:
    with pytest.raises(Poison) as caught:
        S3Payload(s3).before(pointer_message(bucket, "gone/42"))
    assert f"s3://{bucket}/gone/42" in caught.value.reason
    assert "NoSuchKey" in caught.value.reason


def test_a_missing_bucket_is_poison_too(s3: Any) -> None:
    with pytest.raises(Poison) as caught:
        S3Payload(s3).before(pointer_message("no-such-bucket-here", "k"))
    assert "s3://no-such-bucket-here/k" in caught.value.reason


class RefusingS3:
    """An S3 endpoint that answers every read with one error (S3 itself, not our code)."""

    def __init__(self, code: str, status: int):
        self.code, self.status = code, status

    def get_object(self, **_: Any) -> Any:
        raise ClientError(
            {
                "Error": {"Code": self.code, "Message": "x"},
                "ResponseMetadata": {"HTTPStatusCode": self.status},
            },
            "GetObject",
        )


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500), ("Throttling", 400)])
def test_throttling_and_server_errors_are_retried_not_poison(code: str, status: int) -> None:
    with pytest.raises(PayloadError) as caught:
        S3Payload(RefusingS3(code, status)).before(pointer_message("b", "k"))
    assert not isinstance(caught.value, Poison) and caught.value.transient
    assert "s3://b/k" in str(caught.value)


def test_access_denied_is_poison_naming_bucket_and_key() -> None:
    with pytest.raises(Poison) as caught:
        S3Payload(RefusingS3("AccessDenied", 403)).before(pointer_message("b", "secret/k"))
    assert caught.value.reason == "S3 payload s3://b/secret/k: AccessDenied"


def test_an_object_over_the_size_bound_is_poison_without_reading_it(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="huge", Body=b"x" * 5000)
    marked = pointer_message(bucket, "huge")
    marked.message_attributes[SIZE_ATTRIBUTE]["StringValue"] = "1"  # a producer that lied
    with pytest.raises(Poison) as caught:
        S3Payload(s3, max_bytes=4096).before(marked)
    assert "5000 bytes is over the limit of 4096" in caught.value.reason


def test_a_marked_body_that_is_not_a_pointer_is_poison_without_its_bytes() -> None:
    marked = message('{"secret": "do-not-log"}', message_attributes={SIZE_ATTRIBUTE: {"StringValue": "9"}})
    with pytest.raises(Poison) as caught:
        S3Payload(lambda: pytest.fail("no S3 call for a malformed pointer")).before(marked)
    assert "do-not-log" not in caught.value.reason and SIZE_ATTRIBUTE in caught.value.reason


def test_a_plain_body_passes_untouched_and_no_s3_client_is_made() -> None:
    plain = message('["software.amazon.payloadoffloading.PayloadS3Pointer", {"looks": "like one"}]')
    step = S3Payload(lambda: pytest.fail("an S3 client was made for a plain body"))
    assert step.before(plain) is plain
    step.settled(plain, "deleted")
    step.close()


def test_a_dead_lettered_message_keeps_its_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"needed by dlq replay")
    step = S3Payload(s3, delete_after_success=True)
    step.before(pointer_message(bucket, "keep"))
    for outcome in ("dead_lettered", "retried", "released"):
        step.settled(pointer_message(bucket, "keep"), outcome)
    step.close()
    assert exists(s3, bucket, "keep")


def test_delete_after_success_off_keeps_the_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    step = S3Payload(s3, delete_after_success=False)
    step.settled(pointer_message(bucket, "kept"), "deleted")
    step.close()
    assert exists(s3, bucket, "kept")


def test_many_deleted_messages_remove_every_object(s3: Any, bucket: str) -> None:
    keys = [f"k-{n}" for n in range(25)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    step = S3Payload(s3)
    step.start()
    for key in keys:
        step.settled(pointer_message(bucket, key), "deleted")
    step.close()
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_small_bodies_are_sent_as_they_are(s3: Any) -> None:
    attrs = {"a": {"DataType": "String", "StringValue": "1"}}
    body, out = offload_if_large("small", attrs, s3=lambda: pytest.fail("no S3"), bucket="b", threshold=1000)
    assert (body, out) == ("small", attrs)


def test_the_threshold_counts_attributes_as_sqs_does(s3: Any, bucket: str) -> None:
    attrs = {"name": {"DataType": "String", "StringValue": "x" * 100}}  # 4 + 6 + 100 bytes
    body, _ = offload_if_large("y" * 890, attrs, s3=s3, bucket=bucket, threshold=1000)
    assert body == "y" * 890
    body, out = offload_if_large("y" * 891, attrs, s3=s3, bucket=bucket, threshold=1000)
    assert json.loads(body)[0] == POINTER_CLASS and out[SIZE_ATTRIBUTE]["StringValue"] == "891"
    assert resolve_body(body, out, s3=s3) == ("y" * 891, attrs)


def test_without_a_bucket_a_body_too_large_for_the_queue_is_a_clear_error() -> None:
    threshold = offload_threshold(262144, 1048576, "")
    assert threshold == 1048576
    with pytest.raises(ConfigError, match=r"set \[payload\] s3_bucket"):
        offload_if_large("z" * 1048577, {}, s3=None, bucket="", threshold=threshold)


def test_a_large_body_with_ten_attributes_cannot_be_offloaded(bucket: str) -> None:
    attrs = {f"a{n}": {"DataType": "String", "StringValue": "v"} for n in range(10)}
    with pytest.raises(ConfigError, match="already has 10"):
        offload_if_large("z" * 2000, attrs, s3=lambda: pytest.fail("no S3"), bucket=bucket, threshold=1000)


def test_describe_pointer_says_nothing_of_plain_messages() -> None:
    assert describe_pointer("hello", {}) is None
    assert describe_pointer("not json", {SIZE_ATTRIBUTE: {"StringValue": "1"}}) is None
    assert resolve_body("hello", {}, s3=None) == ("hello", {})


class ChunkedS3:
    """An S3 endpoint that streams an object in small chunks, with or without its length."""

    def __init__(self, data: bytes, length: int | None):
        self.data, self.length = data, length

    def get_object(self, **_: Any) -> dict[str, Any]:
        data = self.data

        class Stream:
            def iter_chunks(self, size: int) -> Any:
                return (data[i : i + 7] for i in range(0, len(data), 7))

            def close(self) -> None:
                pass

        response: dict[str, Any] = {"Body": Stream()}
        if self.length is not None:
            response["ContentLength"] = self.length
        return response


@pytest.mark.parametrize("length", [None, 5, 100, 150])
def test_a_stream_of_unknown_or_wrong_length_is_read_whole_and_still_bounded(length: int | None) -> None:
    data = "ü-stream-€".encode() * 10  # 130 bytes
    step = S3Payload(ChunkedS3(data, length), max_bytes=200)
    assert step.before(pointer_message("b", "k")).body == data.decode()
    with pytest.raises(Poison, match="over the limit of 64"):
        S3Payload(ChunkedS3(data, None), max_bytes=64).before(pointer_message("b", "k"))


def test_a_pointer_outside_the_allowed_buckets_is_neither_read_nor_deleted(s3: Any, bucket: str) -> None:
    # GIVEN a step limited to one bucket, and a message pointing into another one
    s3.put_object(Bucket=bucket, Key="precious", Body=b"not a payload")
    step = S3Payload(s3, delete_after_success=True, allowed_buckets=["payloads-only"])
    foreign = pointer_message(bucket, "precious")
    # WHEN it is processed and (say, by a handler-less path) settled as deleted
    with pytest.raises(Poison, match=f"s3://{bucket}/precious: bucket not allowed"):
        step.before(foreign)
    step.settled(foreign, "deleted")
    step.close()
    # THEN the object is untouched
    assert exists(s3, bucket, "precious")
