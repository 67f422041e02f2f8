"""The lambda style: Lambda's SQS event and context, and Lambda's partial-batch response rules.

Messages come from a real receive on the local SQS server, so the event is built from what
boto3 returns (attributes as strings, binary attributes as bytes). Powertools' own parser model
and batch processors judge the result, as they would inside Lambda.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import threading
import time
import uuid
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.parser.models import SqsModel

from examples.lambda_powertools import ledger_fifo, orders
from poller.dev.localsqs import LOCAL_REGION
from poller.handlers.styles import BadResponse, ReportedFailure, build_runner
from poller.message import Message, Poison, Released
from tests.messages import message

ATTRIBUTES = {
    "kind": {"DataType": "String", "StringValue": "order"},
    "priority": {"DataType": "Number", "StringValue": "7"},
    "ratio": {"DataType": "Number.float", "StringValue": "0.25"},
    "meta": {"DataType": "String.json", "StringValue": '{"a": 1}'},
    "thumb": {"DataType": "Binary", "BinaryValue": b"\x89PNG\x00\xff"},
    "icon": {"DataType": "Binary.gif", "BinaryValue": b"GIF89a\x00"},
}


def receive(sqs: Any, url: str, count: int) -> list[dict[str, Any]]:
    """Receive `count` messages as the daemon does (every system and message attribute)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(got) < count and time.monotonic() < deadline:
        got += sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, count - len(got)),
            WaitTimeSeconds=1,
            VisibilityTimeout=120,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    assert len(got) == count
    return got


def send(sqs: Any, url: str, bodies: list[str], group: str | None = None, **extra: Any) -> None:
    for i in range(0, len(bodies), 10):
        entries = []
        for j, body in enumerate(bodies[i : i + 10]):
            entry: dict[str, Any] = {"Id": str(j), "MessageBody": body, **extra}
            if group is not None:
                entry["MessageGroupId"] = group
                entry["MessageDeduplicationId"] = uuid.uuid4().hex
            entries.append(entry)
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def lambda_runner(target: Any, url: str, timeout: float = 30, **options: Any) -> Any:
    return build_runner(
        "lambda", target, timeout=timeout, region=LOCAL_REGION, queue_url=url, options=options
    )


class Capture:
    """A Lambda handler that keeps each (event, context) it was called with."""

    def __init__(self, response: Any = None):
        self.calls: list[tuple[dict[str, Any], Any]] = []
        self.response = response

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.calls.append((json.loads(json.dumps(event)), context))
        return self.response(event) if callable(self.response) else self.response


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_event_validates_against_powertools_sqs_model(sqs: Any, make_queues: Any, fifo: bool) -> None:
    # GIVEN messages with String, Number, Binary and custom-typed attributes, received from SQS
    url, _ = make_queues(fifo=fifo)
    send(
        sqs,
        url,
        ['{"order_id": "o-1"}', "plain text ✓"],
        group="g-1" if fifo else None,
        MessageAttributes=ATTRIBUTES,
    )
    raws = receive(sqs, url, 2)
    handler = Capture()

    # WHEN the lambda style calls the handler with them
    results = lambda_runner(handler, url).call([Message.from_sqs(r, url) for r in raws])

    # THEN the event is Powertools' SqsModel, with SQS's own values in Lambda's form
    assert results == [None, None]
    ((event, _),) = handler.calls
    model = SqsModel.model_validate(event)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for raw, record, parsed in zip(raws, event["Records"], model.Records, strict=True):
        assert record["messageId"] == raw["MessageId"] and record["receiptHandle"] == raw["ReceiptHandle"]
        assert record["body"] == raw["Body"] and record["md5OfBody"] == raw["MD5OfBody"]
        assert record["md5OfMessageAttributes"] == raw["MD5OfMessageAttributes"]
        assert record["eventSource"] == "aws:sqs" and record["awsRegion"] == LOCAL_REGION
        assert record["eventSourceARN"] == arn
        assert all(isinstance(v, str) for v in record["attributes"].values())
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["attributes"]["SentTimestamp"] == raw["Attributes"]["SentTimestamp"]
        assert record["attributes"]["SenderId"] == raw["Attributes"]["SenderId"]
        attrs = parsed.messageAttributes
        assert attrs["kind"].stringValue == "order" and attrs["kind"].dataType == "String"
        assert attrs["priority"].stringValue == "7" and attrs["priority"].dataType == "Number"
        assert attrs["ratio"].dataType == "Number.float" and attrs["meta"].stringValue == '{"a": 1}'
        assert base64.b64decode(attrs["thumb"].binaryValue) == b"\x89PNG\x00\xff"
        assert base64.b64decode(attrs["icon"].binaryValue) == b"GIF89a\x00"
        assert attrs["icon"].dataType == "Binary.gif" and attrs["icon"].stringValue is None
        assert record["messageAttributes"]["kind"]["stringListValues"] == []
        if fifo:
            assert parsed.attributes.MessageGroupId == "g-1"
            assert parsed.attributes.MessageDeduplicationId == raw["Attributes"]["MessageDeduplicationId"]
            assert parsed.attributes.SequenceNumber == raw["Attributes"]["SequenceNumber"]
    # and Powertools' data classes read it as they read Lambda's
    first = next(iter(SQSEvent(event).records))
    assert first.json_body == {"order_id": "o-1"}
    assert first.message_attributes["priority"].string_value == "7"


def test_event_carries_the_trace_header_and_the_body_the_handler_gets(sqs: Any, make_queues: Any) -> None:
    # GIVEN a message sent with an X-Ray trace header, whose body a pipeline step replaced
    url, _ = make_queues()
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    sqs.send_message(
        QueueUrl=url,
        MessageBody="ciphertext",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": header}},
    )
    message = Message.from_sqs(receive(sqs, url, 1)[0], url)
    message.body = '{"plain": true}'
    handler = Capture()

    # WHEN the lambda style calls the handler
    lambda_runner(handler, url).call([message])

    # THEN the record has the trace header, and body and md5OfBody describe the delivered body
    record = handler.calls[0][0]["Records"][0]
    assert record["attributes"]["AWSTraceHeader"] == header
    assert record["body"] == '{"plain": true}'
    assert record["md5OfBody"] == hashlib.md5(b'{"plain": true}').hexdigest()
    assert "md5OfMessageAttributes" not in record and record["messageAttributes"] == {}


def test_event_source_arn_comes_from_the_queue_url_and_region() -> None:
    # GIVEN messages of queues named by AWS URLs, the legacy form and a local endpoint
    cases = {
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/orders", "eu-west-1"): (
            "arn:aws:sqs:eu-west-1:123456789012:orders"
        ),
        ("https://eu-west-1.queue.amazonaws.com/123456789012/o.fifo", "eu-west-1"): (
            "arn:aws:sqs:eu-west-1:123456789012:o.fifo"
        ),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"): (
            "arn:aws-cn:sqs:cn-north-1:123456789012:q"
        ),
        (
            "http://127.0.0.1:9324/000000000000/local-q",
            "us-east-1",
        ): "arn:aws:sqs:us-east-1:000000000000:local-q",
    }
    for (url, region), arn in cases.items():
        handler = Capture()
        build_runner("lambda", handler, timeout=5, region=region, queue_url=url, options={}).call(
            [message("x", queue_url=url)]
        )
        # THEN eventSourceARN, awsRegion and the function ARN follow them
        record = handler.calls[0][0]["Records"][0]
        assert (record["eventSourceARN"], record["awsRegion"]) == (arn, region)
        context = handler.calls[0][1]
        assert context.invoked_function_arn.startswith(arn.split(":sqs:")[0] + ":lambda:" + region + ":")


def test_context_is_lambdas_with_a_fresh_request_id_and_a_countdown() -> None:
    # GIVEN a lambda-style handler with a 3 s timeout and a function name in the options
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        first = context.get_remaining_time_in_millis()
        time.sleep(0.02)
        seen.append(
            {
                "request": context.aws_request_id,
                "first": first,
                "second": context.get_remaining_time_in_millis(),
                "name": context.function_name,
                "version": context.function_version,
                "arn": context.invoked_function_arn,
                "memory": context.memory_limit_in_mb,
                "group": context.log_group_name,
                "stream": context.log_stream_name,
            }
        )

    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    runner = build_runner(
        "lambda",
        handler,
        timeout=3,
        region="eu-west-1",
        queue_url=url,
        options={"function_name": "orders-fn", "memory_limit_in_mb": 512},
    )

    # WHEN it is called twice
    runner.call([message("a", queue_url=url)])
    runner.call([message("b", queue_url=url)])

    # THEN each call has its own request id; the time left counts down from the timeout
    one, two = seen
    assert one["request"] != two["request"] and uuid.UUID(one["request"]) and uuid.UUID(two["request"])
    assert 0 < one["second"] < one["first"] <= 3000
    assert one["name"] == "orders-fn" and one["version"] == "$LATEST" and one["memory"] == "512"
    assert one["arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:orders-fn"
    assert one["group"] == "/aws/lambda/orders-fn" and "[$LATEST]" in one["stream"]
    assert one["stream"] == two["stream"]  # one execution environment, one log stream


def test_powertools_batch_processor_three_of_fifty_fail(sqs: Any, make_queues: Any) -> None:
    # GIVEN 50 orders of which 3 are invalid, and the unchanged Powertools function
    url, _ = make_queues()
    bad = {7, 23, 41}
    bodies = [json.dumps({"order_id": f"o-{i}", "quantity": 0 if i in bad else 1}) for i in range(50)]
    send(sqs, url, bodies)
    messages = [Message.from_sqs(r, url) for r in receive(sqs, url, 50)]

    # WHEN the lambda style runs them in one call
    results = lambda_runner(orders.lambda_handler, url, function_name="orders").call(messages)

    # THEN exactly the 3 invalid orders failed (to be retried); the other 47 are to be deleted
    failed = {json.loads(m.body)["order_id"] for m, r in zip(messages, results, strict=True) if r is not None}
    assert failed == {f"o-{i}" for i in bad}
    assert all(isinstance(r, ReportedFailure) for r in results if r is not None)
    assert sum(r is None for r in results) == 47


def test_every_record_failing_fails_the_whole_batch(sqs: Any, make_queues: Any) -> None:
    # GIVEN a batch where every order is invalid (Powertools then raises, as in Lambda)
    url, _ = make_queues()
    send(sqs, url, [json.dumps({"order_id": f"o-{i}", "quantity": -1}) for i in range(3)])
    messages = [Message.from_sqs(r, url) for r in receive(sqs, url, 3)]

    # WHEN the lambda style runs it
    results = lambda_runner(orders.lambda_handler, url).call(messages)

    # THEN every message carries the error the call raised
    assert len({id(r) for r in results}) == 1 and "All records failed" in str(results[0])


def test_fifo_processor_fails_the_rest_of_the_group_and_it_is_released(sqs: Any, make_queues: Any) -> None:
    # GIVEN a FIFO batch: account A's 2nd entry is bad; account B's entries are fine
    url, _ = make_queues(fifo=True)
    send(
        sqs,
        url,
        [json.dumps({"entry": i, "amount_cents": "x" if i == 1 else 100}) for i in range(4)],
        group="A",
    )
    send(sqs, url, [json.dumps({"entry": i, "amount_cents": 5}) for i in range(3)], group="B")
    raws = receive(sqs, url, 7)
    messages = [Message.from_sqs(r, url) for r in raws]

    # WHEN the unchanged SqsFifoPartialProcessor function runs them
    results = lambda_runner(ledger_fifo.lambda_handler, url, function_name="ledger").call(messages)

    # THEN in group A the bad entry is retried, the entries after it are released (not deleted),
    # the entry before it is deleted; group B is deleted
    outcome = {(m.group_id, json.loads(m.body)["entry"]): r for m, r in zip(messages, results, strict=True)}
    assert outcome[("A", 0)] is None
    assert isinstance(outcome[("A", 1)], ReportedFailure)
    assert isinstance(outcome[("A", 2)], Released) and isinstance(outcome[("A", 3)], Released)
    assert all(outcome[("B", i)] is None for i in range(3))


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemIdentifer": "m-1"}]},
        {"batchItemFailures": [{"itemIdentifier": 1}]},
        {"batchItemFailures": "m-1"},
        {"batchItemFailures": {"itemIdentifier": "m-1"}},
        {"batchItemFailures": [{"itemIdentifier": "m-1", "when": object()}]},
        "ok",
        ["m-1"],
    ],
    ids=[
        "unknown-id",
        "empty-id",
        "null-id",
        "wrong-key",
        "number-id",
        "string-list",
        "object-list",
        "not-json",
        "string",
        "list",
    ],
)
def test_malformed_response_fails_the_whole_batch(response: Any) -> None:
    # GIVEN a lambda handler answering with a malformed response
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    batch = [message("a", message_id="m-1", queue_url=url), message("b", message_id="m-2", queue_url=url)]

    # WHEN it is called
    results = lambda_runner(Capture(response), url).call(batch)

    # THEN every message of the batch failed with a BadResponse saying why
    assert all(isinstance(r, BadResponse) for r in results)


@pytest.mark.parametrize(
    "response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, {"statusCode": 200}]
)
def test_empty_response_deletes_the_whole_batch(response: Any) -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    batch = [message("a", message_id="m-1", queue_url=url), message("b", message_id="m-2", queue_url=url)]
    assert lambda_runner(Capture(response), url).call(batch) == [None, None]


def test_an_exception_retries_the_whole_batch_with_what_was_raised() -> None:
    # GIVEN a lambda handler that raises Poison (or any error) for the whole call
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"

    def handler(event: dict[str, Any], context: Any) -> None:
        raise Poison("schema v1 is gone")

    # WHEN it is called THEN every message gets that exception, for the daemon's per-message policy
    results = lambda_runner(handler, url).call(
        [message("a", message_id="m-1", queue_url=url), message("b", message_id="m-2", queue_url=url)]
    )
    assert [type(r) for r in results] == [Poison, Poison] and str(results[0]) == "schema v1 is gone"


# A Lambda function as often written: a module-level processor, a record handler doing I/O.
io_processor = BatchProcessor(event_type=EventType.SQS)


def io_record_handler(record: Any) -> None:
    time.sleep(0.001)  # a database write
    if json.loads(record.body)["quantity"] == 0:
        raise ValueError("quantity 0")


def io_lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=io_record_handler, processor=io_processor)


def test_one_lambda_call_at_a_time_keeps_powertools_module_state_correct() -> None:
    # GIVEN two batches, each with its own invalid orders, and a module-level BatchProcessor
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    messages = [
        message(json.dumps({"quantity": 0 if i % 5 == 0 else 1}), message_id=f"m-{i}", queue_url=url)
        for i in range(40)
    ]
    runner = lambda_runner(io_lambda_handler, url)
    halves = [messages[:20], messages[20:]]
    wrong = [0, 0]

    # WHEN two threads of one process call the runner at once, many times
    def run(i: int) -> None:
        expected = [ReportedFailure if json.loads(m.body)["quantity"] == 0 else type(None) for m in halves[i]]
        for _ in range(5):
            wrong[i] += [type(r) for r in runner.call(halves[i])] != expected

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # THEN every call saw only its own batch: its failures are exactly its invalid orders
    assert runner.exclusive and wrong == [0, 0]


def test_async_lambda_handler_calls_never_overlap() -> None:
    # GIVEN an async lambda handler that notes how many of its calls run at once
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    running = [0, 0]  # now, most

    async def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        running[0] += 1
        running[1] = max(running)
        await asyncio.sleep(0.01)
        running[0] -= 1
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    runner = lambda_runner(handler, url)

    # WHEN five calls are awaited together on one loop
    async def main() -> list[Any]:
        batches = [[message(str(i), message_id=f"m-{i}", queue_url=url)] for i in range(5)]
        return await asyncio.gather(*(runner.call_async(b) for b in batches))

    results = asyncio.run(main())

    # THEN they ran one at a time and each got its own result
    assert runner.is_async and running[1] == 1
    assert all(isinstance(r[0], ReportedFailure) for r in results)


def test_powertools_logger_reads_the_context() -> None:
    # GIVEN the orders function, whose Logger is decorated with inject_lambda_context
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    runner = build_runner(
        "lambda",
        orders.lambda_handler,
        timeout=30,
        region="eu-west-1",
        queue_url=url,
        options={"function_name": "orders", "memory_limit_in_mb": 512},
    )
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(orders.logger.registered_formatter)
    orders.logger.addHandler(handler)

    # WHEN it handles an order
    try:
        assert runner.call([message('{"order_id": "o-1", "quantity": 2}', queue_url=url)]) == [None]
    finally:
        orders.logger.removeHandler(handler)

    # THEN its structured log line carries the context's fields, as in Lambda
    line = json.loads(lines.getvalue().strip().splitlines()[-1])
    assert line["message"] == "order accepted" and line["order_id"] == "o-1"
    assert line["function_name"] == "orders" and line["function_memory_size"] == "512"
    assert line["function_arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:orders"
    assert uuid.UUID(line["function_request_id"])


@pytest.mark.parametrize("name", ["orders", "ledger_fifo"])
def test_example_configs_name_lambda_targets_that_fit(name: str) -> None:
    import tomllib
    from pathlib import Path

    from poller.handlers.load import load_target
    from poller.handlers.styles import check_signature
    from poller.pipeline.filters import compile_filters

    config = tomllib.loads(
        (Path(__file__).parents[2] / f"examples/lambda_powertools/{name}.toml").read_text()
    )
    handler = config["handler"]
    assert handler["style"] == "lambda" and handler["batch_size"] <= config["workers"]["concurrency"]
    assert check_signature("lambda", load_target(handler["target"], handler.get("options", {})).obj) is None
    compile_filters(handler.get("filters", []))
    assert config["queue"]["url"].endswith(".fifo") == (name == "ledger_fifo")
