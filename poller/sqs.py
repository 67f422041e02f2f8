"""The only code that speaks to SQS: receive, batched delete and visibility, send, attributes.

Every call is counted (`count(action, outcome)`), and botocore's errors become `SqsError`,
marked transient when waiting and trying again can help. It also owns the rules every sender
shares: entry building (`send_entry`: group and FIFO deduplication ids), batch packing by
count and bytes (`pack_batches`), and the receive retry (`receive_retrying`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from poller.aws import aws_client, default_region
from poller.errors import SqsError
from poller.sqswire import Wire
from poller.timeouts import CONNECT_TIMEOUT, READ_SLACK

MAX_BATCH = 10
MAX_BATCH_BYTES = 1024 * 1024  # SendMessageBatch: all bodies and attributes together
MAX_MESSAGE_BYTES = 1024 * 1024  # one message: its body and attributes, in UTF-8 bytes

# Error codes worth waiting out; anything else (missing queue, access denied) is reported too,
# but the daemon still never dies of it: it keeps backing off and saying what is wrong.
_TRANSIENT = re.compile(
    r"Throttl|ServiceUnavailable|InternalError|InternalFailure|RequestTimeout|"
    r"RequestLimitExceeded|KmsThrottled|SlowDown|TooManyRequests|OverLimit|Unavailable"
)
INVALID_RECEIPT = ("ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight")
_TOO_LARGE = re.compile(r"shorter than|too long|TooLong", re.IGNORECASE)

Counter = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class BatchFailure:
    id: str
    code: str
    message: str
    sender_fault: bool

    @property
    def receipt_invalid(self) -> bool:
        return self.code.split(".")[-1] in INVALID_RECEIPT


def region_from_url(url: str) -> str | None:
    match = re.match(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", url)
    return match.group(1) if match else None


def queue_region(queue_cfg: Any) -> str:
    """The queue's region: configured, else from its URL, else the SDK's, else us-east-1 for a
    local endpoint (which ignores it)."""
    return queue_cfg.region or region_from_url(queue_cfg.url) or default_region() or "us-east-1"


def make_client(
    queue_url: str,
    region: str = "",
    endpoint_url: str = "",
    read_timeout: float = 30,
    pool_size: int = 10,
    attempts: int = 3,
    validate: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT,
    lean: bool = False,
) -> Any:
    """An SQS client on this process's botocore session: call it in the process that uses it.
    `attempts` counts requests, not retries: 1 sends each call once. `lean`: see
    `poller.aws.drop_idle_handlers`."""
    region = region or region_from_url(queue_url) or default_region()
    return aws_client(
        "sqs",
        region or ("us-east-1" if endpoint_url else None),
        endpoint_url,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        attempts=attempts,
        pool_size=pool_size,
        validate=validate,
        lean=lean,
    )


def client_for(
    queue_cfg: Any, pool_size: int = 10, attempts: int = 3, validate: bool = True, lean: bool = False
) -> Any:
    return make_client(
        queue_cfg.url,
        queue_cfg.region,
        queue_cfg.endpoint_url,
        read_timeout=queue_cfg.wait_time_seconds + READ_SLACK,
        pool_size=pool_size,
        attempts=attempts,
        validate=validate,
        lean=lean,
    )


def worker_client(config: Any) -> Any:
    """A worker's SQS client. One attempt a call: its own loops retry (receive backoff, pending
    deletes), and a call never blocks the loop longer than one long poll plus its timeouts. No
    parameter validation: its requests are built by code (about 6 us a message). Lean: no
    botocore handlers that do nothing for SQS (about 0.15 ms a call, `poller.aws.drop_idle_handlers`).
    The worker's `Sqs(client, wire=True)` sends its receives, deletes and visibility changes over
    `poller.sqswire` (a quarter of a call's CPU), the rest through botocore."""
    return client_for(config.queue, config.workers.concurrency + 2, attempts=1, validate=False, lean=True)


def sendable_attributes(received: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Message attributes as received, in the shape SendMessage accepts (values unchanged)."""
    out = {}
    for name, attr in received.items():
        value: dict[str, Any] = {"DataType": attr["DataType"]}
        if "StringValue" in attr:
            value["StringValue"] = attr["StringValue"]
        if "BinaryValue" in attr:
            value["BinaryValue"] = attr["BinaryValue"]
        out[name] = value
    return out


def entry_size(body: str, attributes: dict[str, dict[str, Any]]) -> int:
    """Bytes an entry counts toward SQS's message and batch size limits."""
    size = len(body.encode())
    for name, attr in attributes.items():
        size += len(name.encode()) + len(attr["DataType"].encode())
        if "StringValue" in attr:
            size += len(attr["StringValue"].encode())
        if "BinaryValue" in attr:
            size += len(attr["BinaryValue"])
    return size


def chunks(items: Sequence[Any], size: int = MAX_BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def send_entry(
    queue_url: str,
    body: str,
    attributes: dict[str, dict[str, Any]] | None = None,
    *,
    group_id: str | None = None,
    dedup_id: str | None = None,
    delay: int = 0,
    entry_id: str | None = None,
) -> dict[str, Any]:
    """A SendMessage(Batch) entry. FIFO queues get a group ("default" if none is given) and a
    deduplication id (a fresh one if none is given, so content-based deduplication never
    swallows a deliberate resend). A standard queue keeps the group given (a fair queue's
    tenant) and never gets a deduplication id (SQS refuses one there)."""
    entry: dict[str, Any] = {"MessageBody": body}
    if entry_id is not None:
        entry["Id"] = entry_id
    if attributes:
        entry["MessageAttributes"] = attributes
    if delay:
        entry["DelaySeconds"] = int(delay)
    if queue_url.endswith(".fifo"):
        entry["MessageGroupId"] = group_id or "default"
        entry["MessageDeduplicationId"] = dedup_id or uuid.uuid4().hex
    elif group_id:
        entry["MessageGroupId"] = group_id
    return entry


def pack_batches(entries: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Group prepared entries into batches of at most ten and at most 1 MiB, keeping order."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = entry_size(entry["MessageBody"], entry.get("MessageAttributes", {}))
        if batch and (len(batch) == MAX_BATCH or size + n > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += n
    if batch:
        yield batch


def log_receive_failure(log: Any) -> Callable[[Any], None]:
    """`receive_retrying`'s `before_sleep`: a warning for each failed receive, with the wait."""

    def before_sleep(state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "receive_failed",
            error=str(exc),
            code=getattr(exc, "code", None),
            attempt=state.attempt_number,
            retry_in=round(state.upcoming_sleep, 2),
        )

    return before_sleep


def receive_retrying(
    stop: Callable[[], bool],
    sleep: Callable[[float], None],
    before_sleep: Callable[[Any], None] | None = None,
    max_attempts: int | None = None,
    backoff_max: float = 10.0,
) -> Any:
    """The one receive retry: exponential backoff with jitter on SqsError until `stop()` (and,
    with `max_attempts`, only transient errors, at most that many tries). Call it with the
    receive: `receive_retrying(...)(sqs.receive, url, n, wait, visibility)`."""
    import tenacity

    def retryable(exc: BaseException) -> bool:
        if not isinstance(exc, SqsError) or stop():
            return False
        return max_attempts is None or exc.transient

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(retryable),
        stop=tenacity.stop_after_attempt(max_attempts) if max_attempts else tenacity.stop_never,
        wait=tenacity.wait_exponential(multiplier=0.5, max=backoff_max) + tenacity.wait_random(0, 0.5),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # The first try runs bare (tenacity's bookkeeping costs ~30 us a call); a failure is
        # handed to tenacity as its first attempt, so attempts, waits and logs are unchanged.
        try:
            return fn(*args, **kwargs)
        except SqsError as exc:
            failed: list[SqsError] = [exc]

        def attempt(*args: Any, **kwargs: Any) -> Any:
            if failed:
                raise failed.pop()
            return fn(*args, **kwargs)

        return retrying(attempt, *args, **kwargs)

    return call


def too_large(exc: SqsError) -> bool:
    """SQS refused a send for its size (over 1 MiB, or over the queue's MaximumMessageSize)."""
    return bool(_TOO_LARGE.search(str(exc)))


class Sqs:
    def __init__(
        self,
        client: Any,
        count: Counter | None = None,
        count_error: Counter | None = None,
        wire: bool = False,
    ):
        """`wire`: receives, deletes and visibility batches over `poller.sqswire` (the worker's
        hot calls), where it can mirror the client; every other call through the client."""
        self.client = client
        self._hot = (Wire.of(client) if wire else None) or client
        self._count = count or (lambda action, outcome: None)
        self._count_error = count_error or (lambda action, code: None)

    def _call(self, action: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            response = method(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            transient = bool(_TRANSIENT.search(code)) or status >= 500
            raise self._failed(SqsError(action, code, error.get("Message", ""), transient)) from None
        except NoCredentialsError as exc:
            raise self._failed(SqsError(action, "NoCredentials", str(exc), transient=True)) from None
        except BotoCoreError as exc:
            raise self._failed(SqsError(action, type(exc).__name__, str(exc), transient=True)) from None
        self._count(action, "ok")
        return response

    def _failed(self, error: SqsError) -> SqsError:
        self._count(error.action, "error")
        self._count_error(error.action, error.code)
        return error

    # --- receive --------------------------------------------------------------------------

    def receive(
        self, url: str, max_messages: int, wait_time: int, visibility_timeout: int | None = None
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_time,
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        response = self._call("ReceiveMessage", self._hot.receive_message, **kwargs)
        return response.get("Messages", [])

    # --- delete and visibility, batched -----------------------------------------------------

    def delete_batch(self, url: str, receipts: Sequence[tuple[str, str]]) -> list[BatchFailure]:
        """Delete up to ten (id, receipt_handle); returns every entry that failed."""
        entries = [{"Id": id_, "ReceiptHandle": rh} for id_, rh in receipts]
        response = self._call(
            "DeleteMessageBatch", self._hot.delete_message_batch, QueueUrl=url, Entries=entries
        )
        return _failures(response, entries)

    def change_visibility_batch(
        self, url: str, changes: Sequence[tuple[str, str, int]]
    ) -> list[BatchFailure]:
        """Set visibility of up to ten (id, receipt_handle, seconds); returns failed entries."""
        entries = [
            {"Id": id_, "ReceiptHandle": rh, "VisibilityTimeout": int(seconds)}
            for id_, rh, seconds in changes
        ]
        response = self._call(
            "ChangeMessageVisibilityBatch",
            self._hot.change_message_visibility_batch,
            QueueUrl=url,
            Entries=entries,
        )
        return _failures(response, entries)

    def change_visibility(self, url: str, receipt: str, seconds: int) -> None:
        self._call(
            "ChangeMessageVisibility",
            self.client.change_message_visibility,
            QueueUrl=url,
            ReceiptHandle=receipt,
            VisibilityTimeout=int(seconds),
        )

    def delete(self, url: str, receipt: str) -> None:
        self._call("DeleteMessage", self.client.delete_message, QueueUrl=url, ReceiptHandle=receipt)

    # --- send -------------------------------------------------------------------------------

    def send(self, url: str, entry: dict[str, Any]) -> str:
        """Send one entry built by `send_entry`; returns the new message id."""
        return self._call("SendMessage", self.client.send_message, QueueUrl=url, **entry)["MessageId"]

    def send_batch(self, url: str, entries: Sequence[dict[str, Any]]) -> list[BatchFailure]:
        """Send up to ten prepared entries (each with an "Id"); returns the failed ones."""
        response = self._call(
            "SendMessageBatch", self.client.send_message_batch, QueueUrl=url, Entries=list(entries)
        )
        return _failures(response, entries)

    # --- queue --------------------------------------------------------------------------------

    def attributes(self, url: str, names: Sequence[str] = ("All",)) -> dict[str, str]:
        response = self._call(
            "GetQueueAttributes",
            self.client.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=list(names),
        )
        return response.get("Attributes", {})

    def purge(self, url: str) -> None:
        self._call("PurgeQueue", self.client.purge_queue, QueueUrl=url)


def _failures(response: dict[str, Any], entries: Sequence[dict[str, Any]]) -> list[BatchFailure]:
    failed = [
        BatchFailure(f["Id"], f.get("Code", "Unknown"), f.get("Message", ""), f.get("SenderFault", False))
        for f in response.get("Failed", [])
    ]
    # Every entry must be accounted for: one neither successful nor failed is a failure too.
    seen = {s["Id"] for s in response.get("Successful", [])} | {f.id for f in failed}
    failed += [
        BatchFailure(e["Id"], "MissingFromResponse", "entry absent from the batch response", False)
        for e in entries
        if e["Id"] not in seen
    ]
    return failed
