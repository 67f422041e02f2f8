"""Producing messages: `sqs-poller send`, and batching any entries into SendMessageBatch."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from poller.errors import ConfigError, SqsError
from poller.sqs import Sqs, pack_batches, send_entry


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


def to_entry(record: dict[str, Any], url: str, entry_id: str, encryptor: Any = None) -> dict[str, Any]:
    body = record["body"]
    if not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"))
    attributes = {k: to_attribute(v) for k, v in (record.get("attributes") or {}).items()}
    if encryptor is not None:
        body, marker = encryptor.encrypt(body)
        attributes.update(marker)
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
    sqs: Sqs, url: str, records: Iterable[dict[str, Any]], encryptor: Any = None
) -> tuple[int, list[tuple[int, str]]]:
    """Send records in batches (bodies encrypted when an Encryptor is given);
    returns (sent, [(record number, error)])."""
    sent = 0
    failed: list[tuple[int, str]] = []
    numbered = (to_entry(record, url, str(n), encryptor) for n, record in enumerate(records, 1))
    for batch in pack_batches(numbered):
        try:
            failures = sqs.send_batch(url, batch)
        except SqsError as exc:
            failed += [(int(e["Id"]), str(exc)) for e in batch]
            continue
        failed += [(int(f.id), f"{f.code}: {f.message}") for f in failures]
        sent += len(batch) - len(failures)
    return sent, failed
