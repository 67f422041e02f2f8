"""Producers: send a body too large for SQS through S3, in AWS's Extended Client format.

    threshold = offload_threshold(cfg.payload.offload_above, queue_max_message_size(sqs, url),
                                  cfg.payload.s3_bucket)
    body, attributes = offload_if_large(body, attributes, s3=s3, bucket=bucket, threshold=threshold)

A body whose message (body plus attributes, counted as SQS counts them) is over ``threshold``
is written to ``s3://bucket/<uuid4>`` as UTF-8 and replaced by the pointer
``["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":..,"s3Key":..}]`` plus
the Number attribute ``ExtendedPayloadSize``: exactly what AWS's Java and Python extended
clients write and read. A message already carrying a pointer (a DLQ replay) is small and passes
unchanged, so its object is reused. Without a bucket, a body over the queue's limit is a
ConfigError that says so: never a message silently dropped for its size.

When a body is also encrypted, encrypt first and offload the ciphertext: the consumer fetches,
then decrypts. Offload before adding ``traceparent``: the size attribute needs a free slot more.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from poller.errors import ConfigError
from poller.pipeline.payload import POINTER_CLASS, SIZE_ATTRIBUTE, SIZE_ATTRIBUTES, payload_error
from poller.sqs import entry_size

MAX_ATTRIBUTES = 10  # SQS's limit of message attributes per message
DEFAULT_MAX_MESSAGE_SIZE = 262144  # what a queue allows when its attributes cannot be read


def queue_max_message_size(sqs: Any, url: str) -> int:
    """The queue's MaximumMessageSize in bytes (a ``poller.sqs.Sqs``)."""
    value = sqs.attributes(url, ["MaximumMessageSize"]).get("MaximumMessageSize")
    return int(value) if value else DEFAULT_MAX_MESSAGE_SIZE


def offload_threshold(offload_above: int, max_message_size: int, bucket: str) -> int:
    """Message size above which a body goes to S3: the queue's limit, or offload_above when a
    bucket is set and it is lower."""
    return min(offload_above, max_message_size) if bucket else max_message_size


def offload_if_large(
    body: str,
    attributes: Mapping[str, Any],
    *,
    s3: Any,
    bucket: str,
    threshold: int,
) -> tuple[str, dict[str, Any]]:
    """(body, attributes) unchanged if the message fits under ``threshold``; else the body is
    put in S3 and (pointer, attributes + ExtendedPayloadSize) returned. ``s3`` is a client or a
    zero-argument factory (called only when a body is offloaded). Raises ConfigError when the
    message cannot be sent at all, PayloadError when S3 refuses the object."""
    attributes = dict(attributes)
    size = entry_size(body, attributes)
    if size <= threshold:
        return body, attributes
    if not bucket:
        raise ConfigError(
            f"a message of {size} bytes is over the queue's limit of {threshold} bytes; "
            "set [payload] s3_bucket to send large bodies through S3"
        )
    reserved = [name for name in SIZE_ATTRIBUTES if name in attributes]
    if reserved:
        raise ConfigError(f"message attribute {reserved[0]} is reserved for S3 payload pointers")
    if len(attributes) >= MAX_ATTRIBUTES:
        raise ConfigError(
            f"a message of {size} bytes must go through S3, which needs one of SQS's "
            f"{MAX_ATTRIBUTES} message attributes, and it already has {len(attributes)}"
        )
    encoded = body.encode("utf-8")
    key = str(uuid.uuid4())
    pointer = json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}], separators=(",", ":"))
    attributes[SIZE_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(len(encoded))}
    client = s3() if callable(s3) and not hasattr(s3, "put_object") else s3
    try:
        client.put_object(Bucket=bucket, Key=key, Body=encoded)
    except Exception as exc:
        raise payload_error(bucket, key, exc) from None
    return pointer, attributes
