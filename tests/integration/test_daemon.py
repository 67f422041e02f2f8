"""The daemon end to end: real processes against moto's SQS server on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections import Counter

import pytest

from tests.conftest import (
    descendants,
    queue_counts,
    queue_total,
    receive_all,
    send_bodies,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.servers


def test_each_message_is_handled_exactly_once_by_two_processes(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN 500 messages on a queue
    url, dlq = make_queues()
    send_bodies(sqs, url, [json.dumps({"n": n}) for n in range(500)])
    config = write_config(tmp_path, local_sqs, url, dlq, logging={"level": "info"})

    # WHEN the daemon runs with two processes and a no-op handler until the queue is empty
    daemon = daemon_factory(config)
    wait_until(lambda: len(daemon.handled()) >= 500 and queue_total(sqs, url) == 0, timeout=120)
    metrics = wait_until(
        lambda: (m := daemon.scrape()).get('sqs_poller_messages_total{outcome="deleted"}', 0) >= 500 and m,
        timeout=30,
    )

    # THEN every message was handled exactly once, by both processes, and deleted
    handled = daemon.handled()
    counts = Counter(r["body"] for r in handled)
    assert len(counts) == 500 and set(counts.values()) == {1}
    assert len({r["pid"] for r in handled}) == 2
    assert queue_total(sqs, url) == 0 and queue_total(sqs, dlq) == 0
    assert metrics['sqs_poller_messages_total{outcome="deleted"}'] == 500
    assert metrics["sqs_poller_received_total"] == 500
    assert daemon.stop() == 0


def test_the_process_tree_is_the_supervisor_and_its_workers_only(
    local_sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon with three worker processes, ready
    url, dlq = make_queues()
    daemon = daemon_factory(write_config(tmp_path, local_sqs, url, dlq, workers={"processes": 3}))
    daemon.wait_ready()

    # WHEN we list every process below the supervisor
    below = descendants(daemon.proc.pid)

    # THEN they are the three workers: no helper process (multiprocessing's resource tracker)
    assert sorted(below) == sorted(daemon.worker_pids()) and len(below) == 3
    assert daemon.stop() == 0


def _marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries this mark (the daemon's and its workers')."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if f"TEST_MARK={mark}".encode() in fh.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_metrics_port_in_use_exits_1_and_leaves_no_worker_running(
    local_sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a config whose metrics address is taken by another process
    url, dlq = make_queues()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = write_config(tmp_path, local_sqs, url, dlq, metrics={"listen": f"127.0.0.1:{port}"})
    mark = uuid.uuid4().hex

    # WHEN the daemon starts (its workers start before the supervisor binds the port)
    daemon = daemon_factory(config, env={"TEST_MARK": mark})
    code = daemon.proc.wait(timeout=60)

    # THEN it exits 1 naming the address, and no worker of it outlives it
    taken.close()
    assert code == 1
    failed = [r for r in daemon.logs() if r.get("event") == "metrics_listen_failed"]
    assert failed and failed[0]["listen"] == f"127.0.0.1:{port}"
    assert _marked_processes(mark) == []


def test_sigterm_while_the_workers_start_stops_cleanly(local_sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a daemon that has just started its workers, before the supervisor is up
    url, dlq = make_queues()
    mark = uuid.uuid4().hex
    daemon = daemon_factory(write_config(tmp_path, local_sqs, url, dlq), env={"TEST_MARK": mark})
    wait_until(lambda: len(_marked_processes(mark)) >= 2, timeout=30, interval=0.005)

    # WHEN it gets SIGTERM at once
    code = daemon.stop()

    # THEN it exits 0 and leaves no worker behind
    assert code == 0, daemon.text()
    wait_until(lambda: _marked_processes(mark) == [], timeout=10)


def test_workers_whose_supervisor_is_killed_while_they_start_exit(
    local_sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon whose first worker process has just been started, still booting
    url, dlq = make_queues()
    mark = uuid.uuid4().hex
    daemon = daemon_factory(write_config(tmp_path, local_sqs, url, dlq), env={"TEST_MARK": mark})
    wait_until(lambda: len(_marked_processes(mark)) >= 2, timeout=30, interval=0.005)

    # WHEN the supervisor is killed outright (no chance to stop its workers)
    daemon.proc.kill()
    daemon.proc.wait()

    # THEN no worker outlives it: one that learns of it at start exits, one already polling
    # stops at its next look (within a long poll)
    wait_until(lambda: _marked_processes(mark) == [], timeout=60)


def test_failures_retry_after_the_backoff_then_succeed(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a handler that fails on the first two receives, and a 30 s visibility timeout
    url, dlq = make_queues()
    send_bodies(sqs, url, ["flaky"])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.sample_handlers:fail_twice"},
        retry={"backoff_base": 2.0, "backoff_max": 60},
    )

    # WHEN the daemon runs until the message is gone
    daemon = daemon_factory(config)
    wait_until(lambda: len(daemon.handled()) >= 3 and queue_total(sqs, url) == 0, timeout=40)

    # THEN it was handled on the third receive, each retry waiting for the backoff
    # (2 s, then 4 s, less jitter) rather than coming back at once or after 30 s
    runs = daemon.handled()
    assert [r["receive_count"] for r in runs] == [1, 2, 3]
    first_gap, second_gap = runs[1]["t"] - runs[0]["t"], runs[2]["t"] - runs[1]["t"]
    assert 1.4 <= first_gap < 10, first_gap
    assert 2.9 <= second_gap < 12, second_gap
    metrics = wait_until(
        lambda: (m := daemon.scrape())['sqs_poller_messages_total{outcome="deleted"}'] == 1 and m
    )
    assert metrics['sqs_poller_messages_total{outcome="retried"}'] == 2
    assert queue_total(sqs, dlq) == 0
    retried = [r for r in daemon.logs() if r.get("event") == "message_retried"]
    assert len(retried) == 2 and all("message_id" in r and "receive_count" in r for r in retried)
    assert daemon.stop() == 0


def test_poison_goes_to_the_dlq_after_one_receive_unchanged(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a message with attributes and a handler that raises Poison
    url, dlq = make_queues()
    body = json.dumps({"order": 42, "note": "ünïcode ✓"})
    send_bodies(sqs, url, [body], tenant="acme", trace="abc-123")
    config = write_config(tmp_path, local_sqs, url, dlq, handler={"target": "tests.sample_handlers:poison"})

    # WHEN the daemon handles it
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, dlq) == 1 and queue_total(sqs, url) == 0, timeout=30)

    # THEN it is in the DLQ after one receive: body and attributes unchanged, plus poller.failure
    assert [r["receive_count"] for r in daemon.handled()] == [1]
    [moved] = receive_all(sqs, dlq)
    assert moved["Body"] == body
    attributes = moved["MessageAttributes"]
    assert attributes["tenant"]["StringValue"] == "acme"
    assert attributes["trace"]["StringValue"] == "abc-123"
    failure = json.loads(attributes["poller.failure"]["StringValue"])
    assert failure["error"] == "cannot parse payload"
    assert failure["type"] == "Poison"
    assert failure["source_queue"] == url
    assert failure["receive_count"] == 1
    assert failure["failed_at"].endswith("+00:00") and failure["host"]
    dead = [r for r in daemon.logs() if r.get("event") == "message_dead_lettered"]
    assert len(dead) == 1 and body not in daemon.text()  # bodies are never logged
    assert daemon.stop() == 0


def test_always_failing_message_reaches_the_dlq_after_max_receives(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a handler that always raises, and max_receives = 3
    url, dlq = make_queues()
    send_bodies(sqs, url, ["doomed"])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        queue={"max_receives": 3},
        handler={"target": "tests.sample_handlers:always_fail"},
        retry={"backoff_base": 0.5, "backoff_max": 1},
    )

    # WHEN the daemon runs
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, dlq) == 1, timeout=30)

    # THEN it was tried exactly three times, then moved with the last error
    assert [r["receive_count"] for r in daemon.handled()] == [1, 2, 3]
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=5)  # sent first, deleted second
    [moved] = receive_all(sqs, dlq)
    failure = json.loads(moved["MessageAttributes"]["poller.failure"]["StringValue"])
    assert failure["type"] == "ValueError" and "boom" in failure["error"]
    assert failure["receive_count"] == 3
    assert daemon.stop() == 0


def test_long_handler_keeps_its_message_hidden(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a 2 s visibility timeout and a handler that takes three of them
    url, dlq = make_queues(visibility=2)
    send_bodies(sqs, url, [json.dumps({"sleep": 6.5})])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        queue={"visibility_timeout": 2},
        handler={"target": "tests.sample_handlers:slow"},
    )

    # WHEN the daemon runs it to the end
    daemon = daemon_factory(config)
    wait_until(lambda: any(r.get("phase") == "end" for r in daemon.handled()), timeout=30)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=10)
    time.sleep(2.5)  # longer than the visibility timeout: a redelivery would show now

    # THEN it ran once and was never redelivered meanwhile: the heartbeat extended it
    assert [r["phase"] for r in daemon.handled()] == ["start", "end"]
    metrics = daemon.scrape()
    assert metrics['sqs_poller_messages_total{outcome="deleted"}'] == 1
    assert metrics['sqs_poller_sqs_requests_total{action="ChangeMessageVisibilityBatch",outcome="ok"}'] >= 2
    assert daemon.stop() == 0


def test_sigterm_finishes_in_flight_work_and_leaves_the_rest_visible(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN 20 slow messages and room for 4 at a time (2 processes x 2)
    url, dlq = make_queues()
    send_bodies(sqs, url, [json.dumps({"sleep": 3, "n": n}) for n in range(20)])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.sample_handlers:slow"},
        workers={"processes": 2, "concurrency": 2, "shutdown_grace": 10},
    )
    daemon = daemon_factory(config)
    wait_until(lambda: len([r for r in daemon.handled() if r["phase"] == "start"]) == 4, timeout=30)

    # WHEN SIGTERM arrives while four handlers run
    started = time.monotonic()
    code = daemon.stop(signal.SIGTERM)
    took = time.monotonic() - started

    # THEN it exits 0 within the grace period, the four finished and were deleted,
    # and the sixteen never started are visible at once
    assert code == 0, daemon.text()
    assert took < 10 + 1 + 2, took
    runs = daemon.handled()
    assert len([r for r in runs if r["phase"] == "end"]) == 4
    assert len([r for r in runs if r["phase"] == "start"]) == 4
    assert queue_counts(sqs, url) == {"visible": 16, "in_flight": 0, "delayed": 0}


def test_sigterm_releases_received_fifo_messages_that_never_started(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN one FIFO group of five slow messages: a worker receives all five, runs the first
    url, dlq = make_queues(fifo=True)
    send_bodies(sqs, url, [json.dumps({"sleep": 2, "n": n}) for n in range(5)], group_id="g1")
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.sample_handlers:slow"},
        workers={"processes": 1, "concurrency": 10},
    )
    daemon = daemon_factory(config)
    wait_until(lambda: daemon.handled(), timeout=30)

    # WHEN SIGTERM arrives
    code = daemon.stop(signal.SIGTERM)

    # THEN the first finishes and is deleted, the other four are visible again at once
    assert code == 0, daemon.text()
    assert [r["phase"] for r in daemon.handled()] == ["start", "end"]
    assert queue_counts(sqs, url) == {"visible": 4, "in_flight": 0, "delayed": 0}


def test_a_killed_worker_is_restarted_and_its_message_handled_later(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a slow message being handled, with a 4 s visibility timeout
    url, dlq = make_queues()
    send_bodies(sqs, url, [json.dumps({"sleep": 2})])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        queue={"visibility_timeout": 4},
        handler={"target": "tests.sample_handlers:slow"},
        workers={"processes": 2, "concurrency": 1},
    )
    daemon = daemon_factory(config)
    [first] = wait_until(lambda: daemon.handled(), timeout=30)

    # WHEN its worker is SIGKILLed mid-message
    os.kill(first["pid"], signal.SIGKILL)
    killed_at = time.time()

    # THEN the worker is restarted, and the message is handled again after its visibility timeout
    wait_until(lambda: any(r["phase"] == "end" for r in daemon.handled()), timeout=30)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=10)
    second = [r for r in daemon.handled() if r["phase"] == "start"][1]
    assert second["receive_count"] == 2 and second["t"] - killed_at >= 2
    wait_until(lambda: len(daemon.worker_pids()) == 2, timeout=15)
    assert first["pid"] not in daemon.worker_pids()
    assert daemon.scrape()["sqs_poller_worker_restarts_total"] == 1
    died = [r for r in daemon.logs() if r.get("event") == "worker_died"]
    assert died and "SIGKILL" in died[0]["how"]
    assert daemon.stop() == 0


def test_fifo_groups_keep_their_order_also_across_a_retry(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN two FIFO groups of eight; the fourth message of group A fails once
    url, dlq = make_queues(fifo=True)
    for group in ("A", "B"):
        bodies = [
            json.dumps({"g": group, "n": n, "sleep": 0.05, "fail": [1] if (group, n) == ("A", 3) else []})
            for n in range(8)
        ]
        send_bodies(sqs, url, bodies, group_id=group)
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.sample_handlers:by_body"},
        workers={"processes": 2, "concurrency": 4},
        retry={"backoff_base": 1.0, "backoff_max": 2},
    )

    # WHEN the daemon works through them with concurrency above one
    daemon = daemon_factory(config)
    wait_until(lambda: len([r for r in daemon.handled() if r["phase"] == "end"]) >= 16, timeout=60)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=10)

    # THEN within each group messages completed in order, one at a time
    runs = daemon.handled()
    for group in ("A", "B"):
        mine = [(r, json.loads(r["body"])) for r in runs if r["group"] == group]
        ends = [body["n"] for r, body in mine if r["phase"] == "end"]
        assert ends == list(range(8)), (group, ends)
        events = [(r["t"], r["phase"]) for r, _ in mine]
        depth = 0
        for _, phase in sorted(events):
            depth += 1 if phase == "start" else -1
            assert depth <= 1, f"group {group} ran two messages at once"
    failed = [json.loads(r["body"])["n"] for r in runs if r["phase"] == "failed"]
    assert failed == [3]
    assert queue_total(sqs, dlq) == 0
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("queue", "bogus", 1, "unknown key queue.bogus"),
        (
            "queue",
            "wait_time_seconds",
            25,
            "queue.wait_time_seconds = 25 is out of range; allowed: int within 0..20",
        ),
        ("workers", "processes", "two", "workers.processes = 'two' has the wrong type"),
        (
            "logging",
            "format",
            "xml",
            "logging.format = 'xml' is not allowed; allowed: one of 'json', 'console'",
        ),
    ],
)
def test_bad_config_exits_2_naming_the_key(local_sqs, make_queues, tmp_path, section, key, value, expected):
    # GIVEN a config with one bad key
    url, dlq = make_queues()
    config = write_config(tmp_path, local_sqs, url, dlq, **{section: {key: value}})
    # WHEN the daemon starts
    result = run_cli("run", "--config", str(config))
    # THEN it exits 2 with an error naming the key and what is allowed
    assert result.returncode == 2
    assert expected in result.stderr


def test_missing_url_and_bad_env_override_exit_2(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(
        '[queue]\ndlq_url = "http://127.0.0.1:1/1/d"\n[handler]\ntarget = "tests.sample_handlers:noop"\n'
    )
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2 and "missing required key queue.url" in result.stderr
    assert "SQS_POLLER_QUEUE_URL" in result.stderr

    result = run_cli(
        "run",
        "--config",
        str(config),
        env={"SQS_POLLER_QUEUE_URL": "http://127.0.0.1:1/1/q", "SQS_POLLER_WORKERS_PROCESSES": "many"},
    )
    assert result.returncode == 2 and "SQS_POLLER_WORKERS_PROCESSES='many' is not valid" in result.stderr

    result = run_cli("run", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2 and "config file not found" in result.stderr


@pytest.mark.parametrize(
    "target, expected",
    [
        ("no_such_module:handle", "ModuleNotFoundError: No module named 'no_such_module'"),
        ("tests.sample_handlers:missing", "has no attribute 'missing'"),
        ("tests.sample_handlers:BrokenConstructor", "ConnectionError: cannot reach the legacy database"),
    ],
)
def test_handler_that_cannot_load_exits_3_instead_of_restarting(
    local_sqs, make_queues, tmp_path, target, expected
):
    # GIVEN a handler target that cannot be loaded
    url, dlq = make_queues()
    config = write_config(tmp_path, local_sqs, url, dlq, handler={"target": target})
    # WHEN the daemon starts
    result = run_cli("run", "--config", str(config), timeout=60)
    # THEN it stops with exit 3 and the import error, without a restart loop
    assert result.returncode == 3, result.stdout + result.stderr
    assert expected in result.stdout
    assert '"worker_died"' not in result.stdout


def test_check_reports_config_handler_and_queues(local_sqs, make_queues, tmp_path):
    url, dlq = make_queues()
    good = write_config(tmp_path, local_sqs, url, dlq)
    result = run_cli("check", "--config", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["check"]: r["result"] for r in rows} == {
        "config": "ok",
        "handler": "ok",
        "queue": "ok",
        "dlq": "ok",
        "redrive": "ok",
    }

    missing = write_config(tmp_path, local_sqs, url + "-gone", dlq)
    result = run_cli("check", "--config", str(missing))
    assert result.returncode == 1
    assert any(json.loads(line)["result"] == "FAILED" for line in result.stdout.splitlines())

    broken = write_config(tmp_path, local_sqs, url, dlq, handler={"target": "nope:x"})
    assert run_cli("check", "--config", str(broken)).returncode == 3


def test_a_wedged_worker_turns_healthz_503_and_is_killed_and_replaced(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a running daemon that reports healthy
    url, dlq = make_queues()
    daemon = daemon_factory(write_config(tmp_path, local_sqs, url, dlq))
    daemon.wait_ready()
    assert daemon.healthz() == 200
    # WHEN one of its workers wedges (frozen: its main thread stops beating)
    pids = daemon.worker_pids()
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGSTOP)
    started = time.monotonic()
    try:
        # THEN /healthz says 503 once its beat is 15 s old
        wait_until(lambda: daemon.healthz() == 503, timeout=30, interval=0.5)
        assert time.monotonic() - started >= 14
        # AND the supervisor kills it at 30 s and starts another: healthy again, the other untouched
        wait_until(lambda: pids[0] not in daemon.worker_pids() and len(daemon.worker_pids()) == 2, timeout=40)
    finally:
        try:
            os.kill(pids[0], signal.SIGCONT)
        except ProcessLookupError:
            pass
    wait_until(lambda: daemon.healthz() == 200, timeout=15)
    assert pids[1] in daemon.worker_pids()
    assert any(r.get("event") == "worker_unresponsive" and r["pid"] == pids[0] for r in daemon.logs())
    assert daemon.stop() == 0


def test_sighup_reloads_the_config_and_replaces_workers(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon running a handler class with options tag = "v1"
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.sample_handlers:WithOptions", "options": {"tag": "v1"}},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, ["before"])
    wait_until(lambda: daemon.handled(), timeout=20)
    old_pids = set(daemon.worker_pids())

    # WHEN the config changes and SIGHUP arrives
    config.write_text(config.read_text().replace('tag = "v1"', 'tag = "v2"'))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(set(daemon.worker_pids()) - old_pids) == 2, timeout=20)
    wait_until(lambda: not (old_pids & set(daemon.worker_pids())), timeout=20)
    send_bodies(sqs, url, ["after"])
    wait_until(lambda: len(daemon.handled()) == 2, timeout=20)

    # THEN new workers run the new options, and no message was lost meanwhile
    tags = {r["body"]: r["tag"] for r in daemon.handled()}
    assert tags == {"before": "v1", "after": "v2"}
    assert daemon.stop() == 0


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    import subprocess
    import sys

    from tests.conftest import REPO

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.moto_only("it starts, stops and restarts its own moto server on one port")
def test_daemon_survives_the_sqs_endpoint_going_away_and_coming_back(tmp_path, daemon_factory):
    from poller.dev.localsqs import LocalSqs, create_queue_pair

    # GIVEN a daemon working through 100 messages on its own SQS endpoint
    server = LocalSqs()
    server.start()
    try:
        client = server.client()
        url, dlq = create_queue_pair(client, "outage", visibility=5)
        send_bodies(client, url, [json.dumps({"n": n, "sleep": 0.05}) for n in range(100)])
        config = write_config(
            tmp_path,
            server,
            url,
            dlq,
            queue={"visibility_timeout": 5},
            handler={"target": "tests.sample_handlers:slow"},
            workers={"processes": 2, "concurrency": 2},
        )
        daemon = daemon_factory(config)
        wait_until(lambda: len(daemon.handled()) >= 20, timeout=30)

        # WHEN the endpoint stops for a few seconds, then comes back on the same address
        server.stop()
        time.sleep(4)
        assert not daemon.exited()
        server = LocalSqs(port=server.port)
        server.start()

        # THEN the daemon resumes and every message is handled (at least once), none lost
        wait_until(lambda: queue_total(client, url) == 0, timeout=90, interval=0.5)
        ends = {json.loads(r["body"])["n"] for r in daemon.handled() if r["phase"] == "end"}
        assert ends == set(range(100))
        assert queue_total(client, dlq) == 0
        assert any(r.get("event") == "receive_failed" for r in daemon.logs())
        assert daemon.stop() == 0
    finally:
        server.stop()


def test_a_killed_worker_is_restarted_after_its_backoff_not_at_the_next_look(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a ready daemon with one worker on an idle queue (its supervisor sleeps up to 5 s
    # between looks once ready)
    url, dlq = make_queues()
    config = write_config(tmp_path, local_sqs, url, dlq, workers={"processes": 1})
    daemon = daemon_factory(config)
    daemon.wait_ready()
    [worker] = wait_until(lambda: daemon.worker_pids(), timeout=15)
    time.sleep(1)

    # WHEN the worker is killed
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()

    # THEN a new one starts after the 0.5 s backoff the log announces, well before a 5 s sleep
    # of the supervisor's loop would have ended
    new = wait_until(lambda: [p for p in daemon.worker_pids() if p != worker], timeout=15)
    restarted_in = time.monotonic() - killed_at
    died = [r for r in daemon.logs() if r.get("event") == "worker_died"]
    assert died and died[0]["restart_in"] == 0.5
    assert restarted_in < 3.5, restarted_in
    assert new and daemon.stop() == 0
