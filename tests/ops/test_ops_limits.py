"""The operator tools at SQS's edges: a replay at exactly 1 MiB. Real CLI processes against
the suite's SQS server."""

from __future__ import annotations

import pytest

from tests.conftest import receive_all
from tests.faultproxy import SQS_MAX_BYTES, FaultProxy
from tests.ops.test_dlq_tools import run_dlq, summary_of

pytestmark = pytest.mark.servers


def test_a_message_of_exactly_one_mib_is_replayed_without_the_counter_and_says_so(
    local_sqs, sqs, make_queues
):
    # GIVEN a DLQ message of exactly 1 MiB, body and attribute, as the daemon leaves one too
    # large to carry poller.failure; sent through a proxy counting SQS's real limit in bytes
    # (moto counts characters and leaves attributes out)
    url, dlq = make_queues()
    attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    body = "é" * ((SQS_MAX_BYTES - len("tenantStringacme")) // 2)
    assert len(body.encode()) + len("tenantStringacme") == SQS_MAX_BYTES
    sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageAttributes=attributes)

    # WHEN the operator replays it to its queue
    with FaultProxy(local_sqs.endpoint_url) as proxy:
        result = run_dlq(proxy, "replay", "--dlq-url", dlq, "--to", url, "--yes")

    # THEN it reaches the queue as it was, without poller.replays, the DLQ is empty, and the
    # summary says the counter was left off and why
    summary = summary_of(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (summary["replayed"], summary["failed"], summary["uncounted"]) == (1, 0, 1)
    assert "without poller.replays" in summary["note"] and "1 MiB" in summary["note"]
    [arrived] = receive_all(sqs, url)
    assert arrived["Body"] == body
    assert set(arrived["MessageAttributes"]) == {"tenant"}
    assert receive_all(sqs, dlq) == []


def test_a_message_with_room_still_gets_the_counter(local_sqs, sqs, make_queues):
    # GIVEN a DLQ message 100 bytes under the limit
    url, dlq = make_queues()
    sqs.send_message(QueueUrl=dlq, MessageBody="x" * (SQS_MAX_BYTES - 100))

    # WHEN replayed through the byte-counting proxy
    with FaultProxy(local_sqs.endpoint_url) as proxy:
        result = run_dlq(proxy, "replay", "--dlq-url", dlq, "--to", url, "--yes")

    # THEN it arrives counted once, and the summary has no note
    summary = summary_of(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uncounted" not in summary and "note" not in summary
    [arrived] = receive_all(sqs, url)
    assert arrived["MessageAttributes"]["poller.replays"]["StringValue"] == "1"
