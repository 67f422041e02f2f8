"""Producing messages: `sqs-poller send`, and batching any entries into SendMessageBatch."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from poller.config import Config, PayloadConfig, QueueConfig
from poller.errors import ConfigError, SqsError
from poller.sqs import Sqs, pack_batches, queue_region, send_entry


def read_jsonl(stream: TextIO) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{stream.name}:{number}: not JSON: {exc}") from None
        if not isinstance(record, dict) or "body" not in record:
            raise ConfigError(f'{stream.name}:{number}: expected an object with a "body"')
        yield record


def to_attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and "DataType" in value:
        return {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {"DataType": "String", "StringValue": str(value)}
    return {"DataType": "Number", "StringValue": str(value)}


Prepare = Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]


def to_entry(
    record: dict[str, Any], url: str, entry_id: str, encryptor: Any = None, prepare: Prepare | None = None
) -> dict[str, Any]:
    body = record["body"]
    if not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"))
    attributes = {k: to_attribute(v) for k, v in (record.get("attributes") or {}).items()}
    if encryptor is not None:
        body, marker = encryptor.encrypt(body)
        attributes.update(marker)
    if prepare is not None:
        body, attributes = prepare(body, attributes)
    return send_entry(
        url,
        body,
        attributes,
        group_id=record.get("group_id"),
        dedup_id=record.get("deduplication_id"),
        delay=int(record.get("delay") or 0),
        entry_id=entry_id,
    )


def send_messages(
    sqs: Sqs,
    url: str,
    records: Iterable[dict[str, Any]],
    encryptor: Any = None,
    prepare: Prepare | None = None,
) -> tuple[int, list[tuple[int, str]]]:
    """Send records in batches (bodies encrypted when an Encryptor is given, then passed through
    `prepare`: S3 offload, trace context); returns (sent, [(record number, error)])."""
    sent = 0
    failed: list[tuple[int, str]] = []
    numbered = (to_entry(record, url, str(n), encryptor, prepare) for n, record in enumerate(records, 1))
    for batch in pack_batches(numbered):
        try:
            failures = sqs.send_batch(url, batch)
        except SqsError as exc:
            failed += [(int(e["Id"]), str(exc)) for e in batch]
            continue
        failed += [(int(f.id), f"{f.code}: {f.message}") for f in failures]
        sent += len(batch) - len(failures)
    return sent, failed


class Producer:
    """What a producer does to each body before it is sent: offload it to S3 when it is over
    the threshold (`[payload]`, and the queue's own MaximumMessageSize), then inject the trace
    context (`[tracing]`). Use as `prepare`; `close()` flushes the trace exporter."""

    def __init__(self, sqs: Sqs, url: str, config: Config | None, queue: QueueConfig | None = None):
        from poller.ops.offload import offload_threshold, queue_max_message_size

        payload = config.payload if config is not None else PayloadConfig()
        self.bucket = payload.s3_bucket
        self.threshold = offload_threshold(
            payload.offload_above, queue_max_message_size(sqs, url), self.bucket
        )
        self.url = url
        queue = queue or (config.queue if config else None)  # the config's queue it sends to
        self._s3_args = (
            payload.region or (queue_region(queue) if queue else None),
            payload.endpoint_url or (queue.endpoint_url if queue else None),
        )
        self.tracer = None
        if config is not None and config.tracing.enabled:
            from poller.pipeline.tracing import SendTracing

            self.tracer = SendTracing()

    def __call__(self, body: str, attributes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from poller.aws import aws_client
        from poller.ops.offload import offload_if_large

        body, attributes = offload_if_large(
            body,
            attributes,
            s3=lambda: aws_client("s3", *self._s3_args),
            bucket=self.bucket,
            threshold=self.threshold,
        )
        if self.tracer is not None:
            attributes = self.tracer.inject(self.url, attributes)
        return body, attributes

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.close()
