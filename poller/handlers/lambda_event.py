"""The event and context AWS Lambda passes to an SQS-triggered function, built from our Messages.

The shape follows what Lambda's SQS event source mapping delivers: `{"Records": [...]}` with
lowerCamel keys and every value a string; `messageAttributes` in Lambda's lowerCamel form with
binary values base64-encoded; `md5OfBody` of the body the function receives.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from poller.message import Message

EVENT_SOURCE = "aws:sqs"

_LENGTH = struct.Struct("!I")


def partition_of(region: str) -> str:
    """The ARN partition a region belongs to."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def queue_account_and_name(queue_url: str) -> tuple[str, str]:
    """(account id, queue name) from any queue URL: AWS's, the legacy form, or a local endpoint's."""
    parts = [p for p in urlsplit(queue_url).path.split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"queue URL {queue_url!r} does not end in /ACCOUNT_ID/QUEUE_NAME")
    return parts[-2], parts[-1]


def queue_arn(queue_url: str, region: str) -> str:
    account, name = queue_account_and_name(queue_url)
    return f"arn:{partition_of(region)}:sqs:{region}:{account}:{name}"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def _b64(value: Any) -> str:
    return base64.b64encode(_as_bytes(value)).decode("ascii")


def lambda_message_attributes(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """boto3's received MessageAttributes (DataType, StringValue, BinaryValue bytes) in Lambda's form."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        entry: dict[str, Any] = {}
        string = value.get("StringValue")
        if string is not None:
            entry["stringValue"] = str(string)
        binary = value.get("BinaryValue")
        if binary is not None:
            entry["binaryValue"] = _b64(binary)
        strings = value.get("StringListValues")
        entry["stringListValues"] = [str(v) for v in strings] if strings else []
        binaries = value.get("BinaryListValues")
        entry["binaryListValues"] = [_b64(v) for v in binaries] if binaries else []
        entry["dataType"] = str(value.get("DataType", "String"))
        out[name] = entry
    return out


def md5_of_message_attributes(raw: Mapping[str, Mapping[str, Any]]) -> str | None:
    """SQS's MD5OfMessageAttributes: sorted names, each length-prefixed name, type and value."""
    if not raw:
        return None
    parts: list[bytes] = []
    for name in sorted(raw):
        value = raw[name]
        for data in (name.encode("utf-8"), str(value.get("DataType", "String")).encode("utf-8")):
            parts += (_LENGTH.pack(len(data)), data)
        if value.get("StringValue") is not None:
            data = str(value["StringValue"]).encode("utf-8")
            parts += (b"\x01", _LENGTH.pack(len(data)), data)
        elif value.get("BinaryValue") is not None:
            data = _as_bytes(value["BinaryValue"])
            parts += (b"\x02", _LENGTH.pack(len(data)), data)
    return md5_hex(b"".join(parts))


def lambda_attributes(message: Message, sender: str) -> dict[str, str]:
    """The record's system attributes, every value a string, the required ones always present."""
    given = message.attributes
    sent = given.get("SentTimestamp") or str(int(message.sent_at.timestamp() * 1000))
    out = {"ApproximateReceiveCount": str(message.receive_count), "SentTimestamp": str(sent)}
    for key, value in given.items():
        if key not in out and value is not None:
            out[key] = value if isinstance(value, str) else str(value)
    out.setdefault("SenderId", sender)
    out.setdefault("ApproximateFirstReceiveTimestamp", out["SentTimestamp"])
    if message.group_id is not None:
        out.setdefault("MessageGroupId", message.group_id)
    return out


class RecordBuilder:
    """Builds Lambda SQS records for one queue (the ARN and region are computed once)."""

    def __init__(self, queue_url: str, region: str):
        self.region = region
        self.arn = queue_arn(queue_url, region)
        self.account = queue_account_and_name(queue_url)[0]

    def record(self, message: Message) -> dict[str, Any]:
        raw = message.message_attributes
        record: dict[str, Any] = {
            "messageId": message.message_id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": lambda_attributes(message, self.account),
            "messageAttributes": lambda_message_attributes(raw),
            "md5OfBody": md5_hex(message.body.encode("utf-8")),
        }
        md5_attributes = md5_of_message_attributes(raw)
        if md5_attributes is not None:
            record["md5OfMessageAttributes"] = md5_attributes
        record["eventSource"] = EVENT_SOURCE
        record["eventSourceARN"] = self.arn
        record["awsRegion"] = self.region
        return record

    def event(self, messages: Sequence[Message]) -> dict[str, list[dict[str, Any]]]:
        return {"Records": [self.record(m) for m in messages]}


class LambdaContext:
    """The attributes and method of the context object Lambda's Python runtime passes."""

    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: str,
        log_group_name: str,
        log_stream_name: str,
        deadline: float,
    ):
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.client_context = None
        self.identity = SimpleNamespace(cognito_identity_id=None, cognito_identity_pool_id=None)
        self.tenant_id = None
        self._deadline = deadline  # time.monotonic() seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id}, function_name={self.function_name}, "
            f"function_version={self.function_version}, invoked_function_arn={self.invoked_function_arn})"
        )


class ContextFactory:
    """One per worker process, like an execution environment: a log stream of its own."""

    def __init__(
        self,
        *,
        queue_url: str,
        region: str,
        timeout: float,
        function_name: str | None = None,
        function_version: str = "$LATEST",
        memory_limit_in_mb: int | str = 128,
    ):
        account, name = queue_account_and_name(queue_url)
        self.function_name = function_name or name.removesuffix(".fifo")
        self.function_version = str(function_version)
        self.arn = f"arn:{partition_of(region)}:lambda:{region}:{account}:function:{self.function_name}"
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        day = datetime.now(tz=UTC).strftime("%Y/%m/%d")
        self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"
        self.timeout = timeout

    def new_context(self) -> LambdaContext:
        """A fresh context for one call: a new request id, the deadline `timeout` from now."""
        return LambdaContext(
            function_name=self.function_name,
            function_version=self.function_version,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.memory_limit_in_mb,
            log_group_name=self.log_group_name,
            log_stream_name=self.log_stream_name,
            deadline=time.monotonic() + self.timeout,
        )
