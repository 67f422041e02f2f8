"""Fair queues (SQS, July 2025): a standard queue's message may carry a MessageGroupId, its
tenant. Every re-send keeps it (send, DLQ replay, export and replay from the file); ordering
rules stay FIFO-only, and a standard queue is never given a deduplication id.

moto accepts MessageGroupId on a standard queue and returns it on receive, so these run end to
end. moto also accepts a MessageDeduplicationId there (SQS refuses one), so that rule is checked
on the entries built, where moto cannot tell."""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.sqs import send_entry
from tests.conftest import receive_all
from tests.integration.test_daemon import run_cli
from tests.ops.test_dlq_tools import run_dlq, snapshot, summary_of

FAILURE = "poller.failure"

pytestmark = pytest.mark.servers
FAUXQS_NO_TENANT = pytest.mark.quirk(
    "fauxqs", "it takes a MessageGroupId on a standard queue but never returns it (no fair queues)"
)


def tenants(messages: list[dict[str, Any]]) -> dict[str, str | None]:
    return {m["Body"]: m["Attributes"].get("MessageGroupId") for m in messages}


def test_entries_keep_a_standard_queues_group_and_never_give_it_a_dedup_id():
    standard = send_entry("https://q/jobs", "b", group_id="tenant-1", dedup_id="d-1")
    assert standard == {"MessageBody": "b", "MessageGroupId": "tenant-1"}
    assert send_entry("https://q/jobs", "b") == {"MessageBody": "b"}
    fifo = send_entry("https://q/jobs.fifo", "b", group_id="g", dedup_id="d-1")
    assert (fifo["MessageGroupId"], fifo["MessageDeduplicationId"]) == ("g", "d-1")
    assert send_entry("https://q/jobs.fifo", "b")["MessageGroupId"] == "default"


@FAUXQS_NO_TENANT
def test_send_keeps_the_tenant_from_a_jsonl_file_and_group_id(local_sqs, sqs, make_queues, tmp_path):
    # GIVEN a JSONL file with tenants, and one without
    url, _ = make_queues()
    path = tmp_path / "in.jsonl"
    lines = [{"body": "a", "group_id": "tenant-1"}, {"body": "b", "group_id": "tenant-2"}, {"body": "c"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    target = ("--queue-url", url, "--endpoint-url", local_sqs.endpoint_url)
    # WHEN sent to a standard queue, the file and a body with --group-id
    assert run_cli("send", *target, "--file", str(path)).returncode == 0
    assert run_cli("send", *target, "--group-id", "tenant-3", "d").returncode == 0
    # THEN each message carries its tenant
    assert tenants(receive_all(sqs, url)) == {"a": "tenant-1", "b": "tenant-2", "c": None, "d": "tenant-3"}


def fair_dead_letters(sqs: Any, dlq: str, source: str, bodies: dict[str, str]) -> None:
    """Put {body: tenant} on a standard DLQ as the daemon does: tenant kept, poller.failure added."""
    record = json.dumps({"error": "boom", "type": "ValueError", "source_queue": source, "queue": "jobs"})
    for body, tenant in bodies.items():
        sqs.send_message(
            QueueUrl=dlq,
            MessageBody=body,
            MessageGroupId=tenant,
            MessageAttributes={FAILURE: {"DataType": "String", "StringValue": record}},
        )


@FAUXQS_NO_TENANT
def test_replay_keeps_tenants_and_a_skipped_message_holds_back_nothing(local_sqs, sqs, make_queues):
    # GIVEN a fair queue's DLQ: three messages of tenant-1, one of tenant-2
    url, dlq = make_queues()
    fair_dead_letters(
        sqs, dlq, url, {"t1-a": "tenant-1", "t1-skip": "tenant-1", "t1-c": "tenant-1", "t2-a": "tenant-2"}
    )
    # WHEN replayed, skipping one of tenant-1's messages
    result = run_dlq(local_sqs, "replay", "--dlq-url", dlq, "--match-body", "^(?!t1-skip)", "--yes")
    summary = summary_of(result)
    # THEN the others, tenant-1's later ones too, are back with their tenants: no FIFO hold-back
    assert (summary["replayed"], summary["skipped"]) == (3, 1), summary
    assert tenants(snapshot(sqs, url)) == {"t1-a": "tenant-1", "t1-c": "tenant-1", "t2-a": "tenant-2"}
    assert tenants(snapshot(sqs, dlq)) == {"t1-skip": "tenant-1"}


@FAUXQS_NO_TENANT
def test_export_then_replay_from_the_file_keeps_tenants(local_sqs, sqs, make_queues, tmp_path):
    # GIVEN a fair queue's DLQ, exported (and deleted) to a file
    url, dlq = make_queues()
    fair_dead_letters(sqs, dlq, url, {"a": "tenant-1", "b": "tenant-2"})
    out = tmp_path / "dlq.jsonl"
    result = run_dlq(local_sqs, "export", "--dlq-url", dlq, "--out", str(out), "--delete")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["body"]: r["attributes"]["MessageGroupId"] for r in records} == {
        "a": "tenant-1",
        "b": "tenant-2",
    }
    # WHEN the file is replayed to the queue
    result = run_dlq(local_sqs, "replay", "--from-file", str(out), "--to", url, "--yes")
    assert summary_of(result)["replayed"] == 2, result.stderr
    # THEN both are back with their tenants
    assert tenants(snapshot(sqs, url)) == {"a": "tenant-1", "b": "tenant-2"}
