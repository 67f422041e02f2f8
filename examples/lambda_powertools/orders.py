"""An SQS-triggered AWS Lambda function, as deployed today: Powertools' BatchProcessor.

Nothing here knows about sqs-poller. Lambda ran it with ReportBatchItemFailures on; sqs-poller
runs it unchanged with `orders.toml` (`[handler] style = "lambda"`): each call gets Lambda's
SQS event and a Lambda context, and the `batchItemFailures` it returns are retried while the
rest of the batch is deleted.

Body: {"order_id": "o-1", "sku": "BOOK-42", "quantity": 2}
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.SQS)
logger = Logger(service="orders")


class InvalidOrder(ValueError):
    pass


def record_handler(record: SQSRecord) -> None:
    order = record.json_body
    if not isinstance(order, dict) or not order.get("order_id"):
        raise InvalidOrder("order_id is missing")
    quantity = order.get("quantity")
    if not isinstance(quantity, int) or quantity <= 0:
        raise InvalidOrder(f"order {order['order_id']}: quantity must be a positive integer")
    logger.info(
        "order accepted",
        order_id=order["order_id"],
        sku=order.get("sku"),
        quantity=quantity,
        receive_count=record.attributes.approximate_receive_count,
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
