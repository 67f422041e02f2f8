"""Producing messages: `sqs-poller send`, and batching any entries into SendMessageBatch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

import click

from poller.errors import ConfigError, SqsError
from poller.sqs import MAX_BATCH, MAX_BATCH_BYTES, Sqs, entry_size


def parse_attribute_options(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--attribute {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


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


def to_entry(record: dict[str, Any], fifo: bool, encryptor: Any = None) -> dict[str, Any]:
    body = record["body"]
    if not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"))
    attributes = {k: to_attribute(v) for k, v in (record.get("attributes") or {}).items()}
    if encryptor is not None:
        body, marker = encryptor.encrypt(body)
        attributes.update(marker)
    entry: dict[str, Any] = {"MessageBody": body}
    if attributes:
        entry["MessageAttributes"] = attributes
    if record.get("delay"):
        entry["DelaySeconds"] = int(record["delay"])
    if fifo:
        entry["MessageGroupId"] = record.get("group_id") or "default"
        entry["MessageDeduplicationId"] = record.get("deduplication_id") or uuid.uuid4().hex
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


def send_messages(
    sqs: Sqs, url: str, records: Iterable[dict[str, Any]], encryptor: Any = None
) -> tuple[int, list[tuple[int, str]]]:
    """Send records in batches (bodies encrypted when an Encryptor is given);
    returns (sent, [(record number, error)])."""
    fifo = url.endswith(".fifo")
    sent = 0
    failed: list[tuple[int, str]] = []
    numbered = ({**to_entry(record, fifo, encryptor), "Id": str(n)} for n, record in enumerate(records, 1))
    for batch in pack_batches(numbered):
        try:
            failures = sqs.send_batch(url, batch)
        except SqsError as exc:
            failed += [(int(e["Id"]), str(exc)) for e in batch]
            continue
        failed += [(int(f.id), f"{f.code}: {f.message}") for f in failures]
        sent += len(batch) - len(failures)
    return sent, failed
