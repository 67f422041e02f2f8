"""The operator tools at SQS's edges: a replay at exactly 1 MiB, a redrive policy that targets
another queue than dlq_url, and what `dlq stats` says of a message without poller.failure (as
docs/dlq.md tells it). Real CLI processes against the suite's SQS server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from poller.dev.localsqs import create_queue_pair
from tests.conftest import REPO, receive_all, write_config
from tests.faultproxy import SQS_MAX_BYTES, FaultProxy
from tests.integration.test_daemon import run_cli
from tests.ops.test_dlq_tools import json_lines, run_dlq, summary_of

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


def check_rows(result: Any) -> dict[str, tuple[str, str]]:
    return {r["check"]: (r["result"], r["detail"]) for r in json_lines(result.stdout)}


def test_check_fails_when_the_redrive_policy_targets_another_queue(local_sqs, sqs, make_queues, tmp_path):
    # GIVEN a queue whose redrive policy moves messages to its own DLQ, and a config that names
    # another queue as dlq_url
    url, own_dlq = make_queues()
    _, other_dlq = create_queue_pair(sqs, f"{Path(url).name}-other")
    arn = {
        q: sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for q in (own_dlq, other_dlq)
    }
    config = write_config(tmp_path, local_sqs, url, other_dlq)

    # WHEN checked
    result = run_cli("check", "--config", str(config))

    # THEN it fails (exit 1) and the redrive row names both queues
    assert result.returncode == 1, result.stdout + result.stderr
    verdict, detail = check_rows(result)["redrive"]
    assert verdict == "FAILED"
    assert arn[own_dlq] in detail and other_dlq in detail and arn[other_dlq] in detail

    # and with the DLQ the policy targets, the same check passes
    good = write_config(tmp_path, local_sqs, url, own_dlq)
    assert check_rows(run_cli("check", "--config", str(good)))["redrive"][0] == "ok"


def test_stats_names_a_message_without_a_failure_record_as_docs_dlq_md_says(local_sqs, sqs, make_queues):
    # GIVEN a message on the DLQ that sqs-poller did not put there (no poller.failure)
    _, dlq = make_queues()
    sqs.send_message(QueueUrl=dlq, MessageBody="moved by SQS's redrive")

    # WHEN the operator samples the DLQ
    result = run_dlq(local_sqs, "stats", "--dlq-url", dlq, "--sample", "5")

    # THEN its type and source are the ones docs/dlq.md names for such a message
    doc = (REPO / "docs" / "dlq.md").read_text()
    section = doc[doc.index("### `dlq stats") : doc.index("### `dlq peek")]
    named = re.findall(r"`(\([^`]*\))`", section)
    breakdown = {r["by"]: r["value"] for r in json_lines(result.stdout)[1:]}
    assert result.returncode == 0, result.stderr
    assert breakdown == {"type": "(missing: not moved by sqs-poller)", "source_queue": "(unknown)"}
    assert set(breakdown.values()) <= set(named), (breakdown, named)
