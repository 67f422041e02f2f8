"""Handlers of every style that the end-to-end style tests run inside the real daemon.

Each records what it saw as JSON lines appended to $RECORD_FILE (one short write per line, so
several worker processes can share the file); `event` records keep the whole Lambda event."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from poller import Message


def append(record: dict[str, Any]) -> None:
    line = json.dumps(record) + "\n"
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# --- lambda style ------------------------------------------------------------------------------


def record_event(event: dict[str, Any], context: Any) -> None:
    """Keeps the whole event and what the context said; deletes everything."""
    append(
        {
            "event": event,
            "pid": os.getpid(),
            "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "function_name": context.function_name,
        }
    )


processor = BatchProcessor(event_type=EventType.SQS)


def fail_marked(record: SQSRecord) -> None:
    body = record.json_body
    append(
        {
            "id": record.message_id,
            "n": body["n"],
            "receive_count": int(record.attributes.approximate_receive_count),
        }
    )
    if body.get("fail_until", 0) >= int(record.attributes.approximate_receive_count):
        raise ValueError(f"record {body['n']} failed")


def powertools_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An unchanged Powertools function: records whose body says so fail."""
    return process_partial_response(
        event=event, record_handler=fail_marked, processor=processor, context=context
    )


fifo_processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def apply_entry(record: SQSRecord) -> None:
    body = record.json_body
    if body.get("fail_until", 0) >= int(record.attributes.approximate_receive_count):
        raise ValueError(f"entry {body['n']} rejected")
    append({"group": record.attributes.message_group_id, "n": body["n"], "t": time.time()})


def powertools_fifo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=apply_entry, processor=fifo_processor, context=context
    )


def malformed(event: dict[str, Any], context: Any) -> Any:
    """Answers with a malformed response on a message's first receive, then deletes all."""
    records = event["Records"]
    for record in records:
        append(
            {"id": record["messageId"], "receive_count": int(record["attributes"]["ApproximateReceiveCount"])}
        )
    kind = json.loads(records[0]["body"])["kind"]
    if all(int(r["attributes"]["ApproximateReceiveCount"]) > 1 for r in records):
        return None
    return {
        "unknown_id": {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
        "empty_id": {"batchItemFailures": [{"itemIdentifier": ""}]},
        "wrong_key": {"batchItemFailures": [{"id": records[0]["messageId"]}]},
    }[kind]


# --- batch style ----------------------------------------------------------------------------------


def sized_batches(messages: list[Message]) -> None:
    append({"batch": [m.message_id for m in messages], "receive_counts": [m.receive_count for m in messages]})


# --- message style, async -----------------------------------------------------------------------


async def sleepy(message: Message) -> None:
    append({"id": message.message_id, "phase": "start", "t": time.time()})
    await asyncio.sleep(0.1)
    append({"id": message.message_id, "phase": "end", "t": time.time()})


def seen(message: Message) -> None:
    append({"id": message.message_id, "body": message.body})
