"""A FIFO-queue Lambda function, as deployed today: Powertools' SqsFifoPartialProcessor.

One message group per account; entries must be applied in order. After a failure the
processor reports the rest of that account's messages as failed too (`skip_group_on_error`),
and other accounts go on. sqs-poller runs it unchanged with `ledger_fifo.toml`, and releases
the rest of a failed group without deleting it, so the group's order holds across retries.

Body: {"account": "acct-7", "entry": 3, "amount_cents": 1250}
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

processor = SqsFifoPartialProcessor(skip_group_on_error=True)
logger = Logger(service="ledger")


class RejectedEntry(ValueError):
    pass


def record_handler(record: SQSRecord) -> None:
    entry = record.json_body
    amount = entry.get("amount_cents")
    if not isinstance(amount, int):
        raise RejectedEntry(f"entry {entry.get('entry')}: amount_cents must be an integer")
    logger.info(
        "entry applied",
        account=record.attributes.message_group_id,
        entry=entry.get("entry"),
        amount_cents=amount,
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
