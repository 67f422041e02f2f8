"""The worker model, from outside: the real daemon (`python -m poller run`) against a local SQS
server. A stuck handler gets its worker replaced; lambda-style messages waiting for their turn
never run twice; a coroutine a sync handler returns is awaited; handlers run only on handler
threads (docs/threads.md); a second signal during a stop never deadlocks."""

from __future__ import annotations

import collections
import signal
import time

import pytest

from tests.conftest import queue_counts, send_bodies, wait_until, write_config

pytestmark = pytest.mark.servers


def records(daemon) -> list[dict]:
    return daemon.handled()


def test_a_stuck_handler_gets_its_worker_replaced_and_the_queue_goes_on(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN one worker whose handler blocks forever on one message (timeout 2 s, stuck margin 3 s)
    url, dlq = make_queues(max_receive_count=20)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        workers={"processes": 1, "concurrency": 4, "shutdown_grace": 2, "stuck_margin": 3},
        handler={"target": "tests.model_handlers:hang_or_record", "timeout": 2},
        retry={"backoff_base": 30.0, "backoff_max": 60},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    first = daemon.worker_pids()
    send_bodies(sqs, url, ["hang"])
    # WHEN it has run past its timeout and the margin
    wait_until(lambda: any(r.get("event") == "handler_stuck" for r in daemon.logs()), timeout=30)
    # THEN the worker was replaced by a successor (a new pid), the stuck one counted and logged
    wait_until(lambda: daemon.worker_pids() and daemon.worker_pids() != first, timeout=30)
    events = [r for r in daemon.logs() if r.get("event") == "worker_replacing"]
    assert events and events[0]["reason"] == "handler stuck" and events[0]["pid"] == first[0]
    assert daemon.scrape().get("sqs_poller_handlers_stuck_total", 0) >= 1
    # AND the message timed out once and went back with its backoff (not lost, not deleted)
    assert any(r.get("event") == "handler_timed_out" for r in daemon.logs())
    # AND the new worker handles the queue
    send_bodies(sqs, url, ["after"])
    wait_until(
        lambda: any(r["body"] == "after" and r["pid"] not in first for r in records(daemon)), timeout=20
    )
    assert daemon.stop() == 0
    assert queue_counts(sqs, url)["visible"] + queue_counts(sqs, url)["in_flight"] == 1  # "hang" is kept


def test_lambda_style_messages_waiting_for_their_turn_run_exactly_once(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN the lambda style, one message a call, one call at a time, each call 1 s, timeout 3 s
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        workers={"processes": 1, "concurrency": 10},
        handler={
            "target": "tests.model_handlers:lambda_sleeps",
            "style": "lambda",
            "batch_size": 1,
            "batch_window": 0,
            "timeout": 3,
        },
    )
    daemon = daemon_factory(config, env={"SLEEP": "1"})
    daemon.wait_ready()
    # WHEN ten messages arrive 0.2 s apart (most wait far longer than the timeout for their turn)
    for n in range(10):
        send_bodies(sqs, url, [f"m{n}"])
        time.sleep(0.2)
    wait_until(lambda: len({r["id"] for r in records(daemon)}) == 10, timeout=60)
    wait_until(lambda: queue_counts(sqs, url) == {"visible": 0, "in_flight": 0, "delayed": 0}, timeout=20)
    time.sleep(4)  # a timed-out waiting message would come back and run again meanwhile
    # THEN each ran exactly once, with its clock started at its call (never timed out)
    runs = collections.Counter(r["id"] for r in records(daemon))
    assert sorted(runs.values()) == [1] * 10
    assert all(r["left_ms"] > 2000 for r in records(daemon))
    assert not any(r.get("event") == "handler_timed_out" for r in daemon.logs())
    assert daemon.scrape()['sqs_poller_messages_total{outcome="deleted"}'] == 10
    assert daemon.stop() == 0


def test_a_coroutine_returned_by_a_sync_handler_is_awaited_before_its_message_is_settled(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a sync decorator around an async def handler
    url, dlq = make_queues()
    config = write_config(
        tmp_path, local_sqs, url, dlq, handler={"target": "tests.model_handlers:decorated_async"}
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    # WHEN five messages arrive, one of which fails inside the coroutine the first time
    send_bodies(sqs, url, ["a", "b", "c", "d", "fail"])
    wait_until(lambda: len(records(daemon)) >= 6, timeout=30)
    wait_until(lambda: queue_counts(sqs, url) == {"visible": 0, "in_flight": 0, "delayed": 0}, timeout=30)
    # THEN every coroutine ran; the failing one was retried, then deleted like the rest
    bodies = collections.Counter(r["body"] for r in records(daemon))
    assert bodies == {"a": 1, "b": 1, "c": 1, "d": 1, "fail": 2}
    metrics = daemon.scrape()
    assert metrics['sqs_poller_messages_total{outcome="deleted"}'] == 5
    assert metrics['sqs_poller_messages_total{outcome="retried"}'] == 1
    assert daemon.stop() == 0


def test_handlers_run_only_on_handler_threads_or_the_event_loop(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN fast handlers of each style (the ones a fast path would once have run on receiving threads)
    cases = [
        ({"target": "tests.model_handlers:thread_name"}, "handler-"),
        (
            {"target": "tests.model_handlers:thread_names_batch", "style": "batch", "batch_size": 5},
            "handler-",
        ),
        ({"target": "tests.model_handlers:thread_name_async"}, "event-loop"),
    ]
    for handler, expected in cases:
        url, dlq = make_queues()
        config = write_config(tmp_path, local_sqs, url, dlq, handler=handler, workers={"processes": 1})
        daemon = daemon_factory(config)
        daemon.wait_ready()
        # WHEN a busy queue's worth of messages arrives
        send_bodies(sqs, url, [f"m{n}" for n in range(60)])
        wait_until(lambda d=daemon: len(records(d)) >= 60, timeout=60)
        # THEN every call ran on a handler thread (or, async, the event loop), never elsewhere
        threads = {r["thread"] for r in records(daemon)}
        assert all(name.startswith(expected) for name in threads), (handler, threads)
        assert daemon.stop() == 0


def test_a_second_sigterm_or_sigint_during_a_stop_never_deadlocks(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon running a 3 s handler
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        workers={"processes": 1, "shutdown_grace": 20},
        handler={"target": "tests.sample_handlers:slow"},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, ['{"sleep": 3}'])
    wait_until(lambda: any(r.get("phase") == "start" for r in records(daemon)), timeout=20)
    # WHEN SIGTERM comes, then twice more while it drains
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    for sig in (signal.SIGTERM, signal.SIGTERM):
        time.sleep(0.3)
        daemon.proc.send_signal(sig)
    # THEN it finishes the running handler and exits 0, well within the grace
    assert daemon.stop(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert any(r.get("phase") == "end" for r in records(daemon))
    assert queue_counts(sqs, url) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_a_second_sigint_forces_the_stop_and_releases_the_running_message(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon running a 30 s handler in its one slot (so no long poll is out: a poll the
    # stop abandoned could take the released message on the server's side, and hide it)
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        workers={"processes": 1, "concurrency": 1, "shutdown_grace": 60},
        handler={"target": "tests.sample_handlers:slow"},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, ['{"sleep": 30}'])
    wait_until(lambda: any(r.get("phase") == "start" for r in records(daemon)), timeout=20)
    # WHEN Ctrl-C comes twice
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    daemon.proc.send_signal(signal.SIGINT)
    # THEN it stops at once with exit 1 (work abandoned), and the message is visible again
    assert daemon.stop(timeout=30) == 1
    assert time.monotonic() - started < 10
    wait_until(lambda: queue_counts(sqs, url)["visible"] == 1, timeout=10)
