"""Crash-proofing under hostile handlers (issue 10), fast versions: the real daemon (`python -m
poller run`) with handlers that exit, kill their own process or leak, and its exit codes and stops.

Hostile endpoints are in test_hostile_endpoints.py; the long versions (200 messages and 3
killers, a leaking handler, a tarpit with 20 s polls) in test_drills.py, run by `make drill`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, queue_total, receive_all, send_bodies, wait_until, write_config

HOSTILE = "tests.hostile_handlers:scripted"


def hostile_config(tmp_path: Path, endpoint: Any, url: str, dlq: str, **sections: dict) -> Path:
    """The hostile handler, 1 s long polls, quick retries; `sections` override."""
    base: dict[str, dict[str, Any]] = {
        "queue": {"visibility_timeout": 5, "max_receives": 2},
        "retry": {"backoff_base": 0.5, "backoff_max": 2},
        "handler": {"target": HOSTILE, "timeout": 60},
        "logging": {"level": "info"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return write_config(tmp_path, endpoint, url, dlq, **base)


def body(n: int, **script: Any) -> str:
    return json.dumps({"n": n, **script})


def phases(daemon: Any, phase: str) -> Counter[int]:
    """How many times each message (by its "n") reached `phase`."""
    return Counter(r["n"] for r in daemon.handled() if r.get("phase") == phase)


def wait_alive(daemon: Any, predicate: Any, timeout: float) -> Any:
    """wait_until(predicate), failing at once with the daemon's log if it exits meanwhile."""
    value = wait_until(lambda: predicate() or daemon.exited(), timeout=timeout, interval=0.2)
    assert not daemon.exited(), f"daemon exited {daemon.proc.returncode}:\n{daemon.text()[-3000:]}"
    return value


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not listening yet
        return 0, str(exc)


def readyz(daemon: Any) -> tuple[int, str]:
    return http_get(daemon.metrics_url + "/readyz")


def events(daemon: Any, name: str) -> list[dict[str, Any]]:
    return [r for r in daemon.logs() if r.get("event") == name]


def failure_of(message: dict[str, Any]) -> dict[str, Any] | None:
    attr = message.get("MessageAttributes", {}).get("poller.failure")
    return json.loads(attr["StringValue"]) if attr else None


def run_cli(*args: str, timeout: float = 25, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SQS_POLLER_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


# --- 1. exit-code truth --------------------------------------------------------------------------


def test_a_handler_that_exits_3_mid_run_is_a_crash_not_a_load_failure(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a running daemon (its workers reported ready), one message at a time per worker
    url, dlq = make_queues(visibility=5, max_receive_count=3)
    daemon = daemon_factory(hostile_config(tmp_path, local_sqs, url, dlq, workers={"concurrency": 1}))
    daemon.wait_ready()

    # WHEN a message makes its handler call os._exit(3), among ten ordinary ones
    send_bodies(sqs, url, [body(0, exit=3)] + [body(n, sleep=0.1) for n in range(1, 11)])
    wait_until(lambda: events(daemon, "worker_died") or daemon.exited(), timeout=15)
    time.sleep(1)

    # THEN the daemon restarts the worker and goes on: exit 3 after ready is a crash
    assert not daemon.exited(), f"daemon exited {daemon.proc.returncode}:\n{daemon.text()[-3000:]}"
    wait_until(lambda: set(phases(daemon, "end")) >= set(range(1, 11)), timeout=20)
    assert daemon.stop() == 0


def test_a_config_that_can_never_work_stops_the_daemon_with_exit_2_naming_the_key(
    local_sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN [crypto] with a keyring file that does not exist
    url, dlq = make_queues()
    missing = tmp_path / "no-such-keyring.json"
    config = hostile_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        crypto={"enabled": True, "provider": "local", "keyring_path": str(missing)},
    )

    # WHEN the daemon starts
    daemon = daemon_factory(config)
    try:
        code = daemon.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still restarting workers after 20 s:\n{daemon.text()[-2000:]}")

    # THEN it stops with exit 2 (bad config), naming the key, instead of restarting forever
    assert code == 2, daemon.text()[-2000:]
    assert "crypto.keyring_path" in daemon.text()


# --- 2. crash attribution ------------------------------------------------------------------------


def test_a_message_that_kills_its_worker_is_dead_lettered_and_its_batch_mates_are_handled(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    # GIVEN 19 ordinary messages (0.5 s each) and one that SIGKILLs its worker, all queued;
    # max_receives 2, and the queue's redrive backstop at 3 receives
    url, dlq = make_queues(visibility=3, max_receive_count=3)
    killer = 0
    send_bodies(sqs, url, [body(killer, sleep=0.1, kill=True)] + [body(n, sleep=0.5) for n in range(1, 20)])
    config = hostile_config(
        tmp_path, local_sqs, url, dlq, queue={"visibility_timeout": 3}, workers={"processes": 2}
    )

    # WHEN the daemon works through them
    started = time.monotonic()
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, url) == 0 and queue_total(sqs, dlq) >= 1, timeout=25, interval=0.5)
    moved = receive_all(sqs, dlq)

    # THEN only the killer is in the DLQ, with a poller.failure saying it crashed its worker;
    # it ran no more than max_receives times, and every batch-mate was handled
    in_dlq = {json.loads(m["Body"])["n"] for m in moved}
    handled = phases(daemon, "end")
    with capsys.disabled():
        print(
            f"\nkiller drill (fast): sent=20 handled={len(handled)} in_dlq={len(in_dlq)} "
            f"innocent_dead_lettered={len(in_dlq - {killer})} killer_runs={phases(daemon, 'start')[killer]} "
            f"({time.monotonic() - started:.1f}s)"
        )
    assert in_dlq == {killer}
    assert set(handled) == set(range(1, 20))
    failure = failure_of(moved[0])
    assert failure is not None, "moved by the redrive backstop, without poller.failure"
    assert "crash" in failure["error"].lower() and "SIGKILL" in failure["error"], failure
    assert phases(daemon, "start")[killer] <= 2
    assert daemon.stop() == 0


# --- 6. memory and message limits ------------------------------------------------------------------


def test_a_worker_is_replaced_after_max_messages_without_losing_or_repeating_any(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN one worker that may handle 5 messages, and 20 messages
    url, dlq = make_queues()
    send_bodies(sqs, url, [body(n, sleep=0.05) for n in range(20)])
    config = hostile_config(
        tmp_path, local_sqs, url, dlq, workers={"processes": 1, "concurrency": 2, "max_messages": 5}
    )

    # WHEN the daemon works through them
    daemon = daemon_factory(config)
    wait_alive(daemon, lambda: len(phases(daemon, "end")) == 20 and queue_total(sqs, url) == 0, timeout=25)

    # THEN each ran once; the worker was replaced every 5 messages, none released or crashed
    runs = [r for r in daemon.handled() if r["phase"] == "end"]
    assert sorted(r["n"] for r in runs) == list(range(20))
    per_worker = Counter(r["pid"] for r in runs)
    assert len(per_worker) >= 4 and max(per_worker.values()) <= 5, per_worker
    assert not events(daemon, "worker_died")
    assert daemon.scrape().get('sqs_poller_messages_total{outcome="released"}', 0) == 0
    assert daemon.stop() == 0


def test_a_leaking_worker_is_replaced_past_max_memory_mb(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN one worker limited to 150 MB, and twelve messages that each leak 40 MB
    url, dlq = make_queues()
    send_bodies(sqs, url, [body(n, leak_mb=40) for n in range(12)])
    config = hostile_config(
        tmp_path, local_sqs, url, dlq, workers={"processes": 1, "concurrency": 1, "max_memory_mb": 150}
    )

    # WHEN the daemon works through them
    daemon = daemon_factory(config)
    wait_alive(daemon, lambda: len(phases(daemon, "end")) == 12 and queue_total(sqs, url) == 0, timeout=25)

    # THEN each ran once, on several successive workers, none of which crashed
    runs = [r for r in daemon.handled() if r["phase"] == "end"]
    assert sorted(r["n"] for r in runs) == list(range(12))
    per_worker = Counter(r["pid"] for r in runs)
    assert len(per_worker) >= 3 and max(per_worker.values()) <= 4, per_worker
    assert not events(daemon, "worker_died")
    assert daemon.stop() == 0


# --- 8. a prompt stop ----------------------------------------------------------------------------


def test_sigterm_with_nothing_in_flight_exits_within_2s_despite_a_20s_long_poll(
    local_sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a ready daemon long-polling an empty queue, 20 s a poll
    url, dlq = make_queues()
    daemon = daemon_factory(hostile_config(tmp_path, local_sqs, url, dlq, queue={"wait_time_seconds": 20}))
    daemon.wait_ready()
    time.sleep(1)

    # WHEN SIGTERM arrives
    started = time.monotonic()
    code = daemon.stop(signal.SIGTERM, timeout=30)
    took = time.monotonic() - started

    # THEN it exits 0 within 2 s (plus a little for a busy machine)
    assert code == 0, daemon.text()[-2000:]
    assert took < 3, took


def test_a_second_sigint_forces_the_stop(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a daemon running a 60 s handler, with a 60 s shutdown grace
    url, dlq = make_queues(visibility=30)
    send_bodies(sqs, url, [body(0, sleep=60)])
    config = hostile_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        queue={"visibility_timeout": 30},
        workers={"processes": 1, "concurrency": 1, "shutdown_grace": 60},
    )
    daemon = daemon_factory(config)
    [running] = wait_until(lambda: [r for r in daemon.handled() if r["phase"] == "start"], timeout=20)

    # WHEN Ctrl-C is pressed once, then again
    daemon.proc.send_signal(signal.SIGINT)
    time.sleep(1.5)
    assert not daemon.exited(), "the first SIGINT drains: it must wait for the running handler"
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGINT)
    try:
        daemon.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("a second SIGINT did not stop the daemon within 10 s")
    took = time.monotonic() - started

    # THEN the second one stops it at once, and no worker is left behind
    assert took < 5, took
    wait_until(lambda: not Path(f"/proc/{running['pid']}").exists(), timeout=5)
