"""Handler styles end to end: the real daemon, moto's server, Powertools' own models and batch
processors (the issue's tests 1-7 of "Leave Lambda without a rewrite")."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter, defaultdict

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel

from tests.conftest import queue_counts, queue_total, receive_all, send_bodies, wait_until, write_config

pytestmark = pytest.mark.servers

LAMBDA = {"style": "lambda", "timeout": 30}


def entries(records):
    return [r for r in records if "event" not in r]


def send_with_attributes(sqs, url, count, fifo=False):
    attributes = {
        "kind": {"DataType": "String", "StringValue": "order"},
        "amount": {"DataType": "Number", "StringValue": "12.5"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01binary"},
        "price": {"DataType": "Number.float", "StringValue": "9.99"},
        "meta": {"DataType": "String.json", "StringValue": '{"a": 1}'},
    }
    for n in range(count):
        extra = {"MessageGroupId": f"g{n % 2}", "MessageDeduplicationId": uuid.uuid4().hex} if fifo else {}
        sqs.send_message(
            QueueUrl=url, MessageBody=json.dumps({"n": n}), MessageAttributes=attributes, **extra
        )


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_lambda_events_validate_against_powertools_sqs_model(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, fifo
):
    # GIVEN messages with String, Number, Binary and custom-typed attributes
    url, dlq = make_queues(fifo=fifo)
    send_with_attributes(sqs, url, 6, fifo=fifo)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        workers={"processes": 1, "concurrency": 10},
        handler={**LAMBDA, "target": "tests.style_handlers:record_event", "batch_size": 10},
    )
    # WHEN an unchanged lambda handler runs them
    daemon = daemon_factory(config)
    wait_until(lambda: sum(len(r["event"]["Records"]) for r in daemon.handled()) >= 6, timeout=60)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=30)
    assert daemon.stop() == 0
    # THEN every event is exactly Lambda's SQS event, as Powertools' own model parses it
    calls = daemon.handled()
    for call in calls:
        parsed = SqsModel.model_validate(call["event"])
        for record in parsed.Records:
            assert record.eventSource == "aws:sqs"
            assert record.eventSourceARN.endswith(url.rsplit("/", 1)[1])
            assert record.messageAttributes["blob"].binaryValue is not None
            assert record.messageAttributes["price"].dataType == "Number.float"
            assert record.messageAttributes["meta"].stringValue == '{"a": 1}'
            if fifo:
                assert record.attributes.MessageGroupId in ("g0", "g1")
                assert record.attributes.SequenceNumber
        assert 0 < call["remaining_ms"] <= 30_000
    assert len({c["request_id"] for c in calls}) == len(calls)
    bodies = sorted(json.loads(r["body"])["n"] for c in calls for r in c["event"]["Records"])
    assert bodies == list(range(6))


def test_powertools_batch_processor_partial_failures_retry_only_the_failed(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN 50 records; 3 fail on their first two receives, 1 of those never recovers
    url, dlq = make_queues()
    bodies = []
    for n in range(50):
        fail_until = {7: 2, 21: 2, 42: 99}.get(n, 0)
        bodies.append(json.dumps({"n": n, "fail_until": fail_until}))
    send_bodies(sqs, url, bodies)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        queue={"max_receives": 3, "visibility_timeout": 30},
        retry={"backoff_base": 1.0, "backoff_max": 1},
        workers={"processes": 2, "concurrency": 10},
        handler={**LAMBDA, "target": "tests.style_handlers:powertools_batch", "batch_size": 10},
    )
    # WHEN the unchanged Powertools function runs them
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, url) == 0 and queue_total(sqs, dlq) == 1, timeout=90)
    metrics = daemon.scrape()
    assert daemon.stop() == 0
    # THEN the 47 others ran once and were deleted; the 2 recovered after retries; 1 is in the DLQ
    runs = Counter(r["n"] for r in daemon.handled())
    assert {n: c for n, c in runs.items() if c > 1} == {7: 3, 21: 3, 42: 3}
    assert set(runs) == set(range(50))
    assert metrics['sqs_poller_messages_total{outcome="deleted"}'] == 49
    assert metrics['sqs_poller_messages_total{outcome="dead_lettered"}'] == 1
    moved = receive_all(sqs, dlq)
    assert [json.loads(m["Body"])["n"] for m in moved] == [42]
    failure = json.loads(moved[0]["MessageAttributes"]["poller.failure"]["StringValue"])
    # reported in batchItemFailures, or (alone in its batch) Powertools' "all records failed"
    assert failure["type"] in ("ReportedFailure", "BatchProcessingError")
    assert failure["receive_count"] == 3


@pytest.mark.parametrize("kind", ["unknown_id", "empty_id", "wrong_key"])
def test_malformed_lambda_responses_retry_the_whole_batch(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, kind
):
    # GIVEN a batch whose handler answers with a malformed response the first time
    url, dlq = make_queues()
    send_bodies(sqs, url, [json.dumps({"kind": kind, "n": n}) for n in range(5)])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        retry={"backoff_base": 1.0, "backoff_max": 1},
        workers={"processes": 1, "concurrency": 10},
        handler={**LAMBDA, "target": "tests.style_handlers:malformed", "batch_size": 10, "batch_window": 1},
    )
    daemon = daemon_factory(config)
    # WHEN it runs
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=60)
    assert daemon.stop() == 0
    # THEN every message of the batch came back (nothing was deleted on the bad answer)
    counts = defaultdict(set)
    for r in daemon.handled():
        counts[r["id"]].add(r["receive_count"])
    assert len(counts) == 5 and all(seen == {1, 2} for seen in counts.values())
    assert queue_total(sqs, dlq) == 0


def test_fifo_partial_processor_keeps_each_groups_order_across_retries(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN two groups of 8; the 3rd entry of group a fails twice before it is accepted
    url, dlq = make_queues(fifo=True)
    for group in ("a", "b"):
        bodies = [json.dumps({"n": n, "fail_until": 2 if (group, n) == ("a", 2) else 0}) for n in range(8)]
        send_bodies(sqs, url, bodies, group_id=group)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        retry={"backoff_base": 1.0, "backoff_max": 1},
        workers={"processes": 2, "concurrency": 10},
        handler={**LAMBDA, "target": "tests.style_handlers:powertools_fifo", "batch_size": 10},
    )
    # WHEN the unchanged SqsFifoPartialProcessor function runs them
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=90)
    assert daemon.stop() == 0
    # THEN each group's entries were applied once each, in order
    applied = defaultdict(list)
    for r in sorted(daemon.handled(), key=lambda r: r["t"]):
        applied[r["group"]].append(r["n"])
    assert applied == {"a": list(range(8)), "b": list(range(8))}
    assert queue_total(sqs, dlq) == 0


def test_batches_fill_within_the_window_and_concurrency(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN 150 messages and batches of up to 100 gathered for up to 2 s
    url, dlq = make_queues(visibility=30)
    send_bodies(sqs, url, [json.dumps({"n": n}) for n in range(150)])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        workers={"processes": 1, "concurrency": 100},
        handler={
            "style": "batch",
            "target": "tests.style_handlers:sized_batches",
            "batch_size": 100,
            "batch_window": 2,
        },
    )
    # WHEN the daemon runs them
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=90)
    assert daemon.stop() == 0
    # THEN calls got batches of up to 100, each message once, none received twice while filling
    batches = [r["batch"] for r in daemon.handled()]
    assert max(len(b) for b in batches) > 10  # several receives filled one batch
    assert all(len(b) <= 100 for b in batches)
    ids = [i for b in batches for i in b]
    assert len(ids) == len(set(ids)) == 150
    assert all(c == 1 for r in daemon.handled() for c in r["receive_counts"])


def test_filters_delete_what_matches_no_pattern(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN orders of two kinds and a filter that keeps only paid ones over 10
    url, dlq = make_queues()
    bodies = [json.dumps({"status": "paid", "total": 5 + n}) for n in range(10)]
    bodies += [json.dumps({"status": "draft", "total": 50}) for _ in range(4)]
    send_bodies(sqs, url, bodies)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={
            "target": "tests.style_handlers:seen",
            "filters": ['{"body": {"status": ["paid"], "total": [{"numeric": [">", 10]}]}}'],
        },
    )
    daemon = daemon_factory(config)
    # WHEN it runs
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=60)
    wait_until(lambda: daemon.scrape().get('sqs_poller_messages_total{outcome="filtered"}') == 10, timeout=10)
    metrics = daemon.scrape()
    assert daemon.stop() == 0
    # THEN the 4 matching were handled, the other 10 deleted unhandled and counted "filtered"
    handled = sorted(json.loads(r["body"])["total"] for r in daemon.handled())
    assert handled == [11, 12, 13, 14]
    assert metrics['sqs_poller_messages_total{outcome="deleted"}'] == 4
    assert queue_total(sqs, dlq) == 0


def test_async_handler_at_concurrency_200_handles_each_once_and_drains_on_sigterm(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN 400 messages and an async def handler that awaits 100 ms of I/O
    url, dlq = make_queues(visibility=60)
    send_bodies(sqs, url, [json.dumps({"n": n}) for n in range(400)])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        workers={"processes": 1, "concurrency": 200, "shutdown_grace": 10},
        handler={"target": "tests.style_handlers:sleepy"},
    )
    daemon = daemon_factory(config)
    # WHEN it has handled some, and then gets SIGTERM mid-flight
    wait_until(lambda: sum(r["phase"] == "end" for r in daemon.handled()) >= 150, timeout=90)
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    # THEN every message that started also finished, none twice, and the rest is on the queue
    records = daemon.handled()
    starts = Counter(r["id"] for r in records if r["phase"] == "start")
    ends = Counter(r["id"] for r in records if r["phase"] == "end")
    assert starts == ends and all(c == 1 for c in ends.values())
    # AND nothing was lost: the rest is back on the queue (visible, or in flight until the
    # visibility timeout when a long poll's late reply outlived the process), none handled
    left = queue_counts(sqs, url)
    assert len(ends) + sum(left.values()) >= 400, (len(ends), left)
    visible = {m["MessageId"] for m in receive_all(sqs, url, visibility=30)}
    assert not visible & set(ends)
