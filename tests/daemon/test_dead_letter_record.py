"""The DLQ copy of a message: poller.failure names the queue it came from by its config name,
and a fair queue's tenant (a standard queue's MessageGroupId) stays on the copy."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from poller.daemon.settle import move_to_dlq
from poller.failure import fitting_failure_record
from poller.message import Message
from poller.sqs import Sqs
from tests.conftest import receive_all, wait_until, write_config

FAILURE = "poller.failure"


def test_moving_to_the_dlq_names_the_queue_and_keeps_the_tenant(sqs, make_queues):
    # GIVEN a message of tenant-7 on a standard queue (a fair queue), received through Sqs
    url, dlq = make_queues()
    sqs.send_message(QueueUrl=url, MessageBody="order", MessageGroupId="tenant-7")
    client = Sqs(sqs)
    [raw] = client.receive(url, 1, 1)
    message = Message.from_sqs(raw, url)
    assert message.group_id == "tenant-7"
    # WHEN it is moved to the DLQ as queue "orders"
    assert move_to_dlq(client, dlq, message, "boom", "ValueError", queue="orders") == ""
    # THEN the copy keeps the tenant, has no deduplication id, and its record names the queue
    [copy] = receive_all(sqs, dlq)
    assert copy["Attributes"]["MessageGroupId"] == "tenant-7"
    assert "MessageDeduplicationId" not in copy["Attributes"]
    record = json.loads(copy["MessageAttributes"][FAILURE]["StringValue"])
    assert (record["queue"], record["source_queue"], record["type"]) == ("orders", url, "ValueError")


def test_even_the_shortest_record_names_the_queue():
    message = Message("id-1", "body", 1, None, datetime.now(tz=UTC), {}, {}, "https://q/jobs")
    full = fitting_failure_record(message, "e" * 5000, "ValueError", room=100_000, queue="jobs")
    minimal = fitting_failure_record(message, "e" * 5000, "ValueError", room=130, queue="jobs")
    assert json.loads(full)["queue"] == "jobs" and "truncated" in json.loads(full)
    assert json.loads(minimal) == {
        "type": "ValueError",
        "source_queue": "https://q/jobs",
        "queue": "jobs",
        "message_id": "id-1",
        "truncated": True,
    }


def test_the_daemon_dead_letters_a_fair_queue_message_with_its_tenant_and_queue_name(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon whose handler poisons every message, on a standard queue (one-queue form)
    url, dlq = make_queues()
    daemon = daemon_factory(
        write_config(tmp_path, local_sqs, url, dlq, handler={"target": "tests.sample_handlers:poison"})
    )
    # WHEN a message of tenant-7 arrives
    sqs.send_message(QueueUrl=url, MessageBody="order", MessageGroupId="tenant-7")
    # THEN the handler saw the tenant as Message.group_id
    [handled] = wait_until(daemon.handled, timeout=30)
    assert handled["group"] == "tenant-7"
    # AND the DLQ copy keeps it, and poller.failure names the queue (its URL's last segment)
    [copy] = wait_until(lambda: receive_all(sqs, dlq), timeout=30)
    assert copy["Attributes"]["MessageGroupId"] == "tenant-7"
    record = json.loads(copy["MessageAttributes"][FAILURE]["StringValue"])
    assert record["queue"] == url.rpartition("/")[2] and record["error"] == "cannot parse payload"
    assert daemon.stop() == 0


def test_dlq_stats_breaks_a_sample_down_by_queue_name(local_sqs, sqs, make_queues):
    from tests.ops.test_dlq_tools import json_lines, run_dlq

    # GIVEN a DLQ holding two messages moved from "orders" and one from "audit"
    url, dlq = make_queues()
    client = Sqs(sqs)
    for n, queue in enumerate(("orders", "orders", "audit")):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
        [raw] = client.receive(url, 1, 1)
        move_to_dlq(client, dlq, Message.from_sqs(raw, url), "boom", "ValueError", queue=queue)
    # WHEN stats samples it THEN the breakdown counts each queue name
    result = run_dlq(local_sqs, "stats", "--dlq-url", dlq, "--sample", "10")
    assert result.returncode == 0, result.stderr
    rows = {(r["by"], r["value"]): r["messages"] for r in json_lines(result.stdout) if "by" in r}
    assert (rows[("queue", "orders")], rows[("queue", "audit")]) == (2, 1)
