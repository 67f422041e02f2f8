"""The worker's lean SQS client (`lean=True`: botocore's idle handlers unregistered): the same
requests reach SQS, and its errors still map to the same codes, one request a call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from poller.errors import SqsError
from poller.sqs import Sqs, make_client
from tests.conftest import queue_total, send_bodies
from tests.faultproxy import FaultProxy

TELEMETRY = {"amz-sdk-invocation-id", "amz-sdk-request"}  # retry headers a one-attempt client drops
PER_REQUEST = {"x-amz-date", "authorization", "user-agent", "content-length"}


@pytest.fixture
def proxy(local_sqs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(local_sqs.endpoint_url) as running:
        yield running


def worker_client(endpoint_url: str, lean: bool = True) -> Any:
    return make_client("", "us-east-1", endpoint_url, attempts=1, validate=False, lean=lean)


def sent_requests(client: Any) -> list[dict[str, Any]]:
    """What the client puts on the wire, as it sends it."""
    seen: list[dict[str, Any]] = []

    def record(request: Any, **_: Any) -> None:
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        seen.append({"body": json.loads(request.body or b"{}"), "headers": headers})

    client.meta.events.register("before-send.sqs", record)
    return seen


def test_lean_client_receives_deletes_and_sends_what_the_default_client_sends(local_sqs, sqs, make_queues):
    # GIVEN a queue with messages, and the worker's client with and without the idle handlers
    url, _ = make_queues()
    send_bodies(sqs, url, [f"m{n}" for n in range(6)])
    lean, full = worker_client(local_sqs.endpoint_url), worker_client(local_sqs.endpoint_url, lean=False)
    lean_wire, full_wire = sent_requests(lean), sent_requests(full)

    # WHEN each receives and deletes a batch the way the worker does
    handled = []
    for client in (lean, full):
        sqs_ = Sqs(client)
        batch = sqs_.receive(url, 3, 1, 30)
        assert sqs_.delete_batch(url, [(str(n), m["ReceiptHandle"]) for n, m in enumerate(batch)]) == []
        handled += [m["Body"] for m in batch]

    # THEN every message was received once and deleted
    assert sorted(handled) == [f"m{n}" for n in range(6)]
    assert queue_total(sqs, url) == 0
    # AND the lean client sent the same requests, headers and all, but for the retry telemetry
    for lean_request, full_request in zip(lean_wire, full_wire, strict=True):
        assert lean_request["body"].keys() == full_request["body"].keys()
        assert lean_request["body"]["QueueUrl"] == full_request["body"]["QueueUrl"] == url
        lean_headers, full_headers = lean_request["headers"], full_request["headers"]
        assert set(lean_headers) == set(full_headers) - TELEMETRY
        assert {k: v for k, v in lean_headers.items() if k not in PER_REQUEST} == {
            k: v for k, v in full_headers.items() if k not in PER_REQUEST | TELEMETRY
        }
        assert lean_headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")


def test_lean_client_errors_keep_their_sqs_codes(local_sqs, sqs, make_queues):
    # GIVEN the lean client and a message received (so its receipt handle is known)
    url, _ = make_queues()
    send_bodies(sqs, url, ["x"])
    lean = Sqs(worker_client(local_sqs.endpoint_url))
    receipt = lean.receive(url, 1, 1, 30)[0]["ReceiptHandle"]

    # WHEN it deletes with a receipt handle SQS never gave, and calls a queue that does not exist
    failures = lean.delete_batch(url, [("0", "not-a-receipt-handle")])
    with pytest.raises(SqsError) as missing:
        lean.receive(url + "-missing", 1, 0, 30)

    # THEN the codes are SQS's own (botocore's query-compatible error mapping still runs)
    assert [f.code for f in failures] == ["ReceiptHandleIsInvalid"]
    assert failures[0].receipt_invalid
    assert missing.value.code == "AWS.SimpleQueueService.NonExistentQueue"
    assert not missing.value.transient
    assert lean.delete_batch(url, [("0", receipt)]) == []


@pytest.mark.parametrize(
    "code, status",
    [("ThrottlingException", 400), ("RequestThrottled", 403), ("InternalError", 500)],
)
def test_lean_client_sends_each_call_once_and_reports_throttling_as_transient(
    local_sqs, make_queues, proxy, code, status
):
    # GIVEN the lean client behind a proxy that throttles (or fails) the next receive
    url, _ = make_queues()
    lean = Sqs(worker_client(proxy.endpoint_url))
    proxy.fail("ReceiveMessage", code, status=status, times=1)

    # WHEN it receives
    with pytest.raises(SqsError) as failed:
        lean.receive(url, 1, 0, 30)

    # THEN the error is transient with its code, and it was one request: no hidden retry
    assert failed.value.code == code
    assert failed.value.transient
    assert proxy.count("ReceiveMessage") == 1
    assert lean.receive(url, 1, 0, 30) == []


def test_lean_client_inside_lambda_still_sends_the_recursion_detection_header(
    local_sqs, make_queues, monkeypatch
):
    # GIVEN a Lambda execution environment (function name and trace id in the environment)
    url, _ = make_queues()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "consumer")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793")
    client = worker_client(local_sqs.endpoint_url)
    wire = sent_requests(client)

    # WHEN the lean client makes a call
    Sqs(client).receive(url, 1, 0, 30)

    # THEN SQS sees the trace header Lambda uses to stop recursive invocation loops
    assert wire[0]["headers"]["x-amzn-trace-id"] == "Root=1-5759e988-bd862e3fe1be46a994272793"
