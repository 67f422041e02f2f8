"""Message bodies kept in S3, in the format of AWS's SQS Extended Client libraries.

A producer using AWS's extended client (Java ``amazon-sqs-java-extended-client-lib`` with
``payload-offloading-java-common-lib-for-aws``, or Python ``amazon-sqs-extended-client``) puts
a large body in S3 as UTF-8 text and sends a pointer instead::

    body       ["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"k"}]
    attribute  ExtendedPayloadSize (Number): the body's size in bytes

Older writers use the class name ``com.amazon.sqs.javamessaging.MessageS3Pointer`` and the
attribute ``SQSLargePayloadSize`` (the Java client 2.x still writes ``SQSLargePayloadSize`` by
default, with the new class name); every combination is read. As in AWS's clients, the size
attribute is what marks a pointer: a body that merely looks like one is the user's data.

``S3Payload`` is the pipeline step: ``before`` hands the handler a copy of the message with the
fetched body and without the size attribute (as AWS's receive does). Fetching is streamed into
a buffer bounded by ``max_bytes``. A missing object, a denied read, a body over ``max_bytes`` or
not UTF-8 is ``Poison`` whose reason names the bucket and key (never body bytes); throttling,
5xx and network errors raise ``PayloadError``, a plain exception, so the message is retried.
``settled(message, "deleted")`` (and ``"filtered"``: the message left the queue too) queues
the object's delete on the step's own thread when ``delete_after_success``; a dead-lettered
message keeps its object, since the DLQ keeps the pointer and ``dlq replay`` needs both.

A pointer may name any bucket; ``allowed_buckets``, when given, limits what a message can make
the worker read or delete (IAM should too: terraform/payload.tf grants one bucket).

``describe_pointer`` and ``resolve_body`` serve ``dlq peek``/``export``; producers offload with
``poller.ops.offload``.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import threading
from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Any

import structlog

from poller.errors import PollerError
from poller.message import Message, Poison

log = structlog.get_logger(__name__)

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
SIZE_ATTRIBUTES = (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE)
POINTER_CLASSES = (POINTER_CLASS, LEGACY_POINTER_CLASS)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
MAX_DELETES_QUEUED = 10_000
DELETE_BATCH = 1000  # DeleteObjects' limit
CLOSE_DEADLINE = 10.0  # seconds close() waits for queued deletes

_TRANSIENT = re.compile(r"Throttl|SlowDown|ServiceUnavailable|InternalError|RequestTimeout|TooManyRequests")


class PayloadError(PollerError):
    """An S3 payload could not be read or written. Names the object, never its bytes."""

    def __init__(self, bucket: str, key: str, code: str, transient: bool):
        super().__init__(f"S3 payload s3://{bucket}/{key}: {code}")
        self.bucket = bucket
        self.key = key
        self.code = code
        self.transient = transient


class MalformedPointer(ValueError):
    """A size attribute is set but the body is not an Extended Client pointer."""


@dataclasses.dataclass(frozen=True)
class Pointer:
    bucket: str
    key: str
    size: int | None  # bytes, as the size attribute says
    pointer_class: str
    size_attribute: str

    def describe(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "format": "current" if self.pointer_class == POINTER_CLASS else "legacy",
            "size_attribute": self.size_attribute,
        }


def find_pointer(body: str, message_attributes: Mapping[str, Any]) -> Pointer | None:
    """The pointer a message carries, or None. Raises MalformedPointer for a marked, bad body."""
    name = next((n for n in SIZE_ATTRIBUTES if n in message_attributes), None)
    if name is None:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        raise MalformedPointer(f"{name} is set but the body is not JSON") from None
    if not (isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[1], dict)):
        raise MalformedPointer(f"{name} is set but the body is not an S3 pointer")
    pointer_class, fields = parsed
    bucket, key = fields.get("s3BucketName"), fields.get("s3Key")
    if pointer_class not in POINTER_CLASSES or not isinstance(bucket, str) or not isinstance(key, str):
        raise MalformedPointer(f"{name} is set but the body is not an S3 pointer")
    if not bucket or not key:
        raise MalformedPointer(f"{name} is set but the pointer names no bucket or key")
    raw_size = (message_attributes[name] or {}).get("StringValue")
    try:
        size = int(raw_size) if raw_size is not None else None
    except ValueError:
        size = None
    return Pointer(bucket, key, size, pointer_class, name)


def describe_pointer(body: str, message_attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """For ``dlq peek``/``export``: {bucket, key, size, format, size_attribute} or None."""
    try:
        pointer = find_pointer(body, message_attributes)
    except MalformedPointer:
        return None
    return pointer.describe() if pointer else None


def without_size_attribute(message_attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message_attributes.items() if k not in SIZE_ATTRIBUTES}


def fetch_payload(s3: Any, pointer: Pointer, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The object's text, read in chunks and never more than max_bytes. Raises PayloadError."""
    if pointer.size is not None and pointer.size > max_bytes:
        raise _too_large(pointer, pointer.size, max_bytes)
    try:
        response = s3.get_object(Bucket=pointer.bucket, Key=pointer.key)
    except Exception as exc:
        raise payload_error(pointer.bucket, pointer.key, exc) from None
    stream = response["Body"]
    try:
        length = response.get("ContentLength")
        if length is not None and length > max_bytes:
            raise _too_large(pointer, length, max_bytes)
        buffer = _read_bounded(stream, length, max_bytes, pointer)
    except PayloadError:
        raise
    except Exception as exc:  # a reset or timeout mid-read: worth another try
        raise PayloadError(pointer.bucket, pointer.key, type(exc).__name__, transient=True) from None
    finally:
        stream.close()
    try:
        return buffer.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(pointer.bucket, pointer.key, "body is not UTF-8 text", transient=False) from None


def _read_bounded(stream: Any, length: int | None, max_bytes: int, pointer: Pointer) -> bytearray:
    """Read the stream into one buffer: sized once when the length is known (peak memory is the
    object plus its decoded text), never past max_bytes."""
    buffer = bytearray(length or 0)
    view, filled = memoryview(buffer), 0
    for chunk in stream.iter_chunks(CHUNK_BYTES):
        end = filled + len(chunk)
        if end > max_bytes:
            raise _too_large(pointer, end, max_bytes)
        if length is not None and end <= length:
            view[filled:end] = chunk
        else:  # the length was unknown or wrong: grow
            view.release()
            del buffer[filled:]
            buffer += chunk
            view = memoryview(buffer)
        filled = end
    view.release()
    del buffer[filled:]
    return buffer


def resolve_body(
    body: str,
    message_attributes: Mapping[str, Any],
    *,
    s3: Any,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[str, dict[str, Any]]:
    """For ``dlq export --resolve``: (fetched body, attributes without the size attribute) for a
    pointer, else (body, attributes) unchanged. Raises PayloadError or MalformedPointer."""
    pointer = find_pointer(body, message_attributes)
    if pointer is None:
        return body, dict(message_attributes)
    return fetch_payload(_client(s3), pointer, max_bytes), without_size_attribute(message_attributes)


def payload_error(bucket: str, key: str, exc: BaseException) -> PayloadError:
    """A botocore error as a PayloadError: 5xx, throttling and network errors are transient."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):  # no answer from S3 at all: connection or timeout
        return PayloadError(bucket, key, type(exc).__name__, transient=True)
    code = str(response.get("Error", {}).get("Code") or type(exc).__name__)
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    transient = status >= 500 or status == 429 or bool(_TRANSIENT.search(code))
    if code in ("404", "NotFound"):
        code = "NoSuchKey"
    elif code in ("403", "Forbidden"):
        code = "AccessDenied"
    return PayloadError(bucket, key, code, transient)


def _too_large(pointer: Pointer, size: int, max_bytes: int) -> PayloadError:
    return PayloadError(
        pointer.bucket, pointer.key, f"{size} bytes is over the limit of {max_bytes}", transient=False
    )


def _client(s3: Any) -> Any:
    """A client, or a zero-argument factory of one."""
    return s3() if callable(s3) and not hasattr(s3, "get_object") else s3


class S3Payload:
    """The pipeline step that resolves Extended Client pointers (see the module doc)."""

    def __init__(
        self,
        s3: Any,
        delete_after_success: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        allowed_buckets: Collection[str] = (),
    ):
        self._s3_source = s3
        # A pointer names any bucket; with a list, a message cannot make us read or delete elsewhere.
        self.allowed_buckets = frozenset(allowed_buckets)
        self._s3: Any = None
        self._s3_lock = threading.Lock()
        self.delete_after_success = delete_after_success
        self.max_bytes = int(max_bytes)
        self._deletes: queue.Queue[tuple[str, str] | None] = queue.Queue(MAX_DELETES_QUEUED)
        self._deleter: threading.Thread | None = None
        self._deleter_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Payload(delete_after_success={self.delete_after_success}, max_bytes={self.max_bytes})"

    @property
    def s3(self) -> Any:
        """This process's S3 client: made on first use, once."""
        if self._s3 is None:
            with self._s3_lock:
                if self._s3 is None:
                    self._s3 = _client(self._s3_source)
        return self._s3

    def blocks(self, message: Message) -> bool:
        """Only a pointer (marked by its size attribute) is fetched: a plain body never waits."""
        attributes = message.message_attributes
        return SIZE_ATTRIBUTE in attributes or LEGACY_SIZE_ATTRIBUTE in attributes

    def before(self, message: Message) -> Message:
        attributes = message.message_attributes
        if SIZE_ATTRIBUTE not in attributes and LEGACY_SIZE_ATTRIBUTE not in attributes:
            return message  # the common case: two dict lookups
        try:
            pointer = find_pointer(message.body, attributes)
        except MalformedPointer as exc:
            raise Poison(str(exc)) from None
        assert pointer is not None
        if self.allowed_buckets and pointer.bucket not in self.allowed_buckets:
            raise Poison(f"S3 payload s3://{pointer.bucket}/{pointer.key}: bucket not allowed")
        try:
            body = fetch_payload(self.s3, pointer, self.max_bytes)
        except PayloadError as exc:
            if exc.transient:
                raise
            raise Poison(str(exc)) from None
        log.debug(
            "payload_fetched",
            message_id=message.message_id,
            bucket=pointer.bucket,
            key=pointer.key,
            bytes=len(body),
        )
        return dataclasses.replace(message, body=body, message_attributes=without_size_attribute(attributes))

    def settled(self, message: Message, outcome: str) -> None:
        if not self.delete_after_success or outcome not in ("deleted", "filtered"):
            return
        try:
            pointer = find_pointer(message.body, message.message_attributes)
        except MalformedPointer:
            return
        if pointer is None or (self.allowed_buckets and pointer.bucket not in self.allowed_buckets):
            return
        self._start_deleter()
        try:
            self._deletes.put_nowait((pointer.bucket, pointer.key))
        except queue.Full:  # never block the housekeeper; the bucket's expiry removes it later
            log.warning("payload_delete_dropped", bucket=pointer.bucket, key=pointer.key, reason="queue full")

    def start(self) -> None:
        self._start_deleter()

    def close(self) -> None:
        """Finish the queued deletes, waiting at most CLOSE_DEADLINE seconds."""
        deleter = self._deleter
        if deleter is None:
            return
        try:
            self._deletes.put(None, timeout=CLOSE_DEADLINE)
        except queue.Full:
            return
        deleter.join(CLOSE_DEADLINE)

    # --- the deleting thread --------------------------------------------------------------------

    def _start_deleter(self) -> None:
        if self._deleter is not None or not self.delete_after_success:
            return
        with self._deleter_lock:
            if self._deleter is None:
                self._deleter = threading.Thread(
                    target=self._delete_loop, name="payload-deleter", daemon=True
                )
                self._deleter.start()

    def _delete_loop(self) -> None:
        while True:
            item = self._deletes.get()
            batch = [item]
            while item is not None and len(batch) < DELETE_BATCH:
                try:
                    item = self._deletes.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            objects = [entry for entry in batch if entry is not None]
            if objects:
                self.delete_objects(objects)
            if None in batch:
                return

    def delete_objects(self, objects: list[tuple[str, str]]) -> None:
        """DeleteObjects per bucket; failures are logged (the bucket's expiry is the backstop)."""
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for bucket, key in objects:
            by_bucket[bucket].append(key)
        for bucket, keys in by_bucket.items():
            try:
                response = self.s3.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )
            except Exception as exc:
                error = payload_error(bucket, "", exc)
                log.warning("payload_delete_failed", bucket=bucket, keys=len(keys), error=error.code)
                continue
            for failed in response.get("Errors", []):
                log.warning(
                    "payload_delete_failed", bucket=bucket, key=failed.get("Key"), error=failed.get("Code")
                )
            log.debug("payload_deleted", bucket=bucket, keys=len(keys) - len(response.get("Errors", [])))


def build_payload_step(
    delete_after_success: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allowed_buckets: Collection[str] = (),
    region: str | None = None,
    endpoint_url: str | None = None,
    pool_size: int = 10,
) -> S3Payload:
    """The step for a worker process; its S3 client is made there, on the first pointer."""
    from poller.aws import aws_client

    return S3Payload(
        lambda: aws_client("s3", region, endpoint_url, pool_size=pool_size),
        delete_after_success,
        max_bytes,
        allowed_buckets,
    )
