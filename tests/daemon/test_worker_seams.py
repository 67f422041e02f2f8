"""The worker's riskiest paths through its seams: a Worker on an in-memory SQS (`MemorySqs`, which
keeps what a real queue would: deletes, visibility changes, sends, and the thread of each call)
and its own metrics registry. The handler timeout race, ReceiptHandleIsInvalid on delete and on
extension, and a partly failed DeleteMessageBatch."""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CollectorRegistry

from poller.daemon.log import configure_logging
from poller.daemon.worker import Worker
from poller.dev.memsqs import MemorySqs
from tests.daemon import memworker
from tests.daemon.memworker import DLQ, value


def make_worker(
    sqs: MemorySqs, handle: Any, timeout: int = 60, **queue: Any
) -> tuple[Worker, CollectorRegistry]:
    configure_logging("info", "json")  # to this test's (captured) stdout
    return memworker.make_worker(sqs, handle, queue=queue, handler={"timeout": timeout})


def run_until(worker: Worker, done: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not met"
        worker.loop()
    worker.begin_stop("test over")
    assert worker.shutdown() == 0


def logged(capsys: Any, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == event]


def test_a_timed_out_handler_is_settled_once_by_the_housekeeper_and_its_late_return_ignored(capsys):
    # GIVEN a handler that runs past its 1 s timeout on its last allowed receive
    sqs = MemorySqs()
    slow = sqs.put("slow", receive_count=2)

    def handle(message: Any) -> None:
        time.sleep(2.5)  # returns "successfully", too late

    worker, registry = make_worker(sqs, handle, timeout=1, max_receives=2)
    # WHEN the worker runs it to the end
    run_until(worker, lambda: sqs.sent and not len(worker.held))
    time.sleep(1.6)  # let the late return happen
    # THEN it was dead-lettered once, by the housekeeper (never the timer, whose clock must not
    # wait on a send, nor its own handler thread, which is still busy), never deleted
    # from the queue by its late success, and only the DLQ move's own delete removed it
    assert [(url, thread) for url, _, thread in sqs.sent] == [(DLQ, "housekeeper")]
    assert sqs.deleted.count(slow) == 1
    assert value(registry, "sqs_poller_handler_timeouts_total") == 1
    assert value(registry, "sqs_poller_messages_total", outcome="dead_lettered") == 1
    assert value(registry, "sqs_poller_messages_total", outcome="deleted") == 0
    assert len(logged(capsys, "handler_timed_out")) == 1


def test_a_timed_out_retry_changes_visibility_once_and_the_late_success_deletes_nothing():
    sqs = MemorySqs()
    slow = sqs.put("slow")
    worker, registry = make_worker(sqs, lambda m: time.sleep(2.5), timeout=1, max_receives=5)
    run_until(worker, lambda: any(r == slow for r, _, _ in sqs.visibility) and not len(worker.held))
    time.sleep(1.6)
    retries = [(seconds, thread) for r, seconds, thread in sqs.visibility if r == slow]
    assert len(retries) == 1 and retries[0][0] > 0 and retries[0][1] == "housekeeper"
    assert sqs.deleted == [] and sqs.sent == []
    assert value(registry, "sqs_poller_messages_total", outcome="retried") == 1


def test_receipt_handle_invalid_on_delete_is_counted_and_logged_and_the_worker_goes_on(capsys):
    # GIVEN a message whose receipt SQS no longer knows by the time it is deleted, and another
    sqs = MemorySqs()
    stale = sqs.put("a")
    fine = sqs.put("b")
    sqs.refuse_delete.add(stale)
    worker, registry = make_worker(sqs, lambda m: None)
    # WHEN both are handled
    run_until(
        worker, lambda: fine in sqs.deleted and value(registry, "sqs_poller_receipt_handle_invalid_total")
    )
    # THEN the refusal is counted and said ("may be processed twice"); the other is deleted
    assert value(registry, "sqs_poller_receipt_handle_invalid_total") == 1
    assert value(registry, "sqs_poller_messages_total", outcome="deleted") == 1
    (line,) = logged(capsys, "delete_receipt_invalid")
    assert line["note"] == "the message may be processed twice" and line["code"] == "ReceiptHandleIsInvalid"


def test_receipt_handle_invalid_on_extension_is_counted_and_the_message_still_settles(capsys):
    # GIVEN a handler that outlives the 3 s visibility, and SQS refusing to extend it
    sqs = MemorySqs()
    long = sqs.put("long")
    sqs.refuse_extend.add(long)
    worker, registry = make_worker(sqs, lambda m: time.sleep(3), visibility_timeout=3)
    # WHEN it runs
    run_until(worker, lambda: long in sqs.deleted, timeout=20)
    # THEN the refused extension is counted and logged, and the message was still deleted once
    assert value(registry, "sqs_poller_receipt_handle_invalid_total") >= 1
    assert logged(capsys, "visibility_extend_refused")
    assert sqs.deleted.count(long) == 1


def test_a_partly_failed_delete_batch_retries_only_the_failed_entries():
    # GIVEN ten messages, three of whose deletes fail once inside the batch response
    sqs = MemorySqs()
    receipts = [sqs.put(f"m{n}") for n in range(10)]
    sqs.fail_delete_once |= set(receipts[2:5])
    worker, registry = make_worker(sqs, lambda m: None)
    # WHEN they are handled
    run_until(worker, lambda: len(sqs.deleted) == 10)
    # THEN every message was deleted exactly once, and counted once, after a second batch
    assert sorted(sqs.deleted) == sorted(receipts)
    assert sqs.delete_calls >= 2
    assert value(registry, "sqs_poller_messages_total", outcome="deleted") == 10
