"""Crash-proofing under hostile handlers and endpoints (issue 10), fast versions: the real daemon
(`python -m poller run`) and CLI, some behind a fault-injecting proxy (tests/faultproxy.py).

The long versions (200 messages and 3 killers, a leaking handler, a tarpit with 20 s polls) are
in test_drills.py, run by `make drill`.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, queue_counts, queue_total, receive_all, send_bodies, wait_until, write_config
from tests.faultproxy import SQS_MAX_BYTES, FaultProxy

HOSTILE = "tests.hostile_handlers:scripted"


@pytest.fixture
def proxy(local_sqs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(local_sqs.endpoint_url) as running:
        yield running


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


# --- 3. the DLQ move always fits -----------------------------------------------------------------


@pytest.mark.parametrize("room", [250, 64], ids=["room_for_a_short_record", "room_for_none"])
def test_poison_near_the_size_limit_is_dead_lettered_after_one_run(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, proxy, room
):
    # GIVEN a legal poison message `room` bytes short of 1 MiB, and SQS's real size limit (the
    # proxy's): 250 bytes hold a shortened poller.failure, not the whole one; 64 hold none
    url, dlq = make_queues(max_receive_count=6)
    big = "x" * (SQS_MAX_BYTES - room)
    sqs.send_message(QueueUrl=url, MessageBody=big)
    daemon = daemon_factory(
        hostile_config(tmp_path, proxy, url, dlq, handler={"target": "tests.hostile_handlers:poison_any"})
    )

    # WHEN the daemon handles it
    wait_until(lambda: queue_total(sqs, dlq) == 1 or len(daemon.handled()) >= 3, timeout=25)
    time.sleep(1)

    # THEN the handler ran once, and the whole body is in the DLQ, with the failure record
    # shortened to fit (or left out when nothing fits)
    runs = daemon.handled()
    assert len(runs) == 1, f"the handler ran {len(runs)} times: the DLQ move did not fit"
    [moved] = receive_all(sqs, dlq)
    assert moved["Body"] == big
    failure = failure_of(moved)
    if room == 64:
        assert failure is None
    else:
        assert failure is not None and failure["type"] == "Poison" and failure["truncated"] is True, failure
        assert failure["source_queue"] == url and failure["message_id"] == runs[0]["id"]
    assert queue_total(sqs, url) == 0
    assert daemon.stop() == 0


def test_a_message_the_dlq_cannot_take_is_left_to_the_redrive_without_rerunning(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a DLQ that takes at most 1024 bytes, and a 4000-byte poison message
    url, dlq = make_queues(max_receive_count=3)
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"MaximumMessageSize": "1024"})
    sqs.send_message(QueueUrl=url, MessageBody="p" * 4000)
    daemon = daemon_factory(
        hostile_config(
            tmp_path,
            local_sqs,
            url,
            dlq,
            queue={"visibility_timeout": 2},
            handler={"target": "tests.hostile_handlers:poison_any"},
        )
    )

    # WHEN the daemon handles it, until the queue's redrive policy moves it
    wait_until(lambda: queue_total(sqs, dlq) == 1, timeout=25, interval=0.5)

    # THEN the handler ran once; the daemon said once that the move cannot fit
    runs = daemon.handled()
    assert len(runs) == 1, f"the handler ran {len(runs)} times"
    message_id = runs[0]["id"]
    said = [r for r in daemon.logs() if r.get("message_id") == message_id and r.get("level") == "error"]
    assert len(said) == 1, said
    assert daemon.stop() == 0


def test_dlq_peek_and_stats_say_why_a_failure_record_is_missing(local_sqs, sqs, make_queues):
    # GIVEN a dead-lettered message that already carried ten attributes (no room for poller.failure)
    _, dlq = make_queues()
    attributes = {f"a{n}": {"DataType": "String", "StringValue": str(n)} for n in range(10)}
    sqs.send_message(QueueUrl=dlq, MessageBody="payload", MessageAttributes=attributes)
    common = ["--endpoint-url", local_sqs.endpoint_url, "--dlq-url", dlq, "--wait", "1", "--visibility", "10"]

    # WHEN an operator peeks at the DLQ and samples its stats
    peek = run_cli("dlq", "peek", *common)
    stats = run_cli("dlq", "stats", "--sample", "5", *common)

    # THEN both say the failure record is missing, and that ten attributes left no room
    assert peek.returncode == 0 and stats.returncode == 0, peek.stderr + stats.stderr
    for output in (peek.stdout, stats.stdout):
        rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        said = " ".join(str(v) for row in rows for v in row.values()).lower()
        assert "missing" in said and ("ten attributes" in said or "10 attributes" in said), output


# --- 4. one attempt is one request ---------------------------------------------------------------


def test_each_failed_receive_is_one_request(local_sqs, sqs, make_queues, tmp_path, daemon_factory, proxy):
    # GIVEN a daemon with one worker, behind a proxy that will fail two receives
    url, dlq = make_queues()
    daemon = daemon_factory(hostile_config(tmp_path, proxy, url, dlq, workers={"processes": 1}))
    daemon.wait_ready()
    proxy.fail("ReceiveMessage", "InternalError", status=500, times=2)

    # WHEN the two failures have been served, and receives succeed again
    wait_until(lambda: proxy.faults["ReceiveMessage"] == 2, timeout=15)
    wait_until(lambda: proxy.count("ReceiveMessage") >= proxy.faults["ReceiveMessage"] + 3, timeout=20)
    metrics = daemon.scrape()

    # THEN the daemon counted two failed receives: no request was a hidden retry
    failed = metrics.get('sqs_poller_sqs_requests_total{action="ReceiveMessage",outcome="error"}', 0)
    assert failed == 2, f"2 failed requests, the daemon saw {failed} failed calls"
    assert daemon.stop() == 0


def test_check_answers_within_seconds_against_an_endpoint_that_never_answers(
    local_sqs, make_queues, tmp_path, proxy
):
    # GIVEN an endpoint that accepts connections and never answers
    url, dlq = make_queues()
    config = hostile_config(tmp_path, proxy, url, dlq)
    proxy.tarpit()

    # WHEN `sqs-poller check` runs
    started = time.monotonic()
    try:
        result = run_cli("check", "--config", str(config), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("check gave no answer within 20 s")
    took = time.monotonic() - started

    # THEN it reports the queues as unreachable, exit 1, within seconds
    assert result.returncode == 1, result.stdout + result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {r["check"]: r["result"] for r in rows}.get("queue") == "FAILED", result.stdout
    assert took < 15, took


def test_sigterm_during_a_receive_that_never_answers_exits_0_promptly(
    local_sqs, make_queues, tmp_path, daemon_factory, proxy
):
    # GIVEN a running daemon whose receives reach an endpoint that stopped answering
    url, dlq = make_queues()
    daemon = daemon_factory(hostile_config(tmp_path, proxy, url, dlq))
    daemon.wait_ready()
    proxy.tarpit("ReceiveMessage")
    held = proxy.count("ReceiveMessage")
    wait_until(lambda: proxy.count("ReceiveMessage") >= held + 2, timeout=10)  # both workers stuck

    # WHEN SIGTERM arrives
    started = time.monotonic()
    code = daemon.stop(signal.SIGTERM, timeout=30)
    took = time.monotonic() - started

    # THEN it exits 0 within 5 s: nothing was in flight
    assert code == 0, daemon.text()[-2000:]
    assert took < 5, took


# --- 5. readiness ----------------------------------------------------------------------------------


def test_readyz_fails_with_the_reason_when_the_queue_does_not_exist(
    local_sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a config whose queue URL does not exist
    url, dlq = make_queues()
    daemon = daemon_factory(hostile_config(tmp_path, local_sqs, url + "-gone", dlq))

    # WHEN the daemon runs
    status, reason = wait_alive(
        daemon, lambda: (r := readyz(daemon))[0] == 503 and "NonExistentQueue" in r[1] and r, timeout=15
    )

    # THEN it is alive (/healthz 200) but not ready, saying why; errors are counted by code
    assert daemon.healthz() == 200
    assert "NonExistentQueue" in reason, reason
    metrics = daemon.scrape()
    assert any(
        name.startswith("sqs_poller_sqs_errors_total") and "NonExistentQueue" in name and value > 0
        for name, value in metrics.items()
    ), [n for n in metrics if "error" in n]
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("code", "status"), [("AccessDenied", 403), ("InvalidClientTokenId", 403)], ids=["denied", "bad_key"]
)
def test_readyz_fails_at_once_on_a_permanent_error(
    local_sqs, make_queues, tmp_path, daemon_factory, proxy, code, status
):
    # GIVEN a ready daemon
    url, dlq = make_queues()
    daemon = daemon_factory(hostile_config(tmp_path, proxy, url, dlq))
    daemon.wait_ready()
    assert wait_until(lambda: readyz(daemon)[0] == 200, timeout=10)

    # WHEN every receive is refused with a permanent error
    proxy.fail("ReceiveMessage", code, status=status)

    # THEN /readyz turns 503 naming the error within a few receives, /healthz stays 200
    _, reason = wait_alive(daemon, lambda: (r := readyz(daemon))[0] == 503 and r, timeout=10)
    assert code in reason, reason
    assert daemon.healthz() == 200
    assert daemon.stop() == 0


def test_readyz_fails_without_credentials(local_sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN no AWS credentials anywhere
    url, dlq = make_queues()
    nowhere = str(tmp_path / "none")
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
        "AWS_CONFIG_FILE": nowhere,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    daemon = daemon_factory(hostile_config(tmp_path, local_sqs, url, dlq), env=env)

    # WHEN the daemon runs
    status, reason = wait_alive(
        daemon, lambda: (r := readyz(daemon))[0] == 503 and "credential" in r[1].lower() and r, timeout=15
    )

    # THEN it is alive but not ready, and says credentials are missing
    assert "credential" in reason.lower(), reason
    assert daemon.healthz() == 200
    assert daemon.stop() == 0


def test_readyz_fails_after_the_window_while_the_endpoint_refuses_and_recovers(
    local_sqs, make_queues, tmp_path, daemon_factory, proxy
):
    # GIVEN a ready daemon with a 3 s readiness window
    url, dlq = make_queues()
    daemon = daemon_factory(hostile_config(tmp_path, proxy, url, dlq, metrics={"ready_window": 3}))
    daemon.wait_ready()
    assert wait_until(lambda: readyz(daemon)[0] == 200, timeout=10)

    # WHEN the endpoint refuses connections
    proxy.refuse()

    # THEN /readyz turns 503 with the reason, /healthz stays 200 (an outage must not replace
    # the fleet); once the endpoint is back, /readyz is 200 again
    _, reason = wait_alive(daemon, lambda: (r := readyz(daemon))[0] == 503 and r, timeout=15)
    assert "receive" in reason.lower(), reason
    assert daemon.healthz() == 200
    proxy.accept()
    wait_until(lambda: readyz(daemon)[0] == 200, timeout=20)
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


# --- 7. dlq export into a path it cannot write -----------------------------------------------------


def dead_letters(sqs: Any, dlq: str, count: int, size: int = 100) -> None:
    send_bodies(sqs, dlq, [json.dumps({"n": n, "pad": "x" * size}) for n in range(count)])


def export_args(local_sqs: Any, dlq: str, out: Path, *extra: str) -> list[str]:
    return [
        "dlq", "export", "--endpoint-url", local_sqs.endpoint_url, "--dlq-url", dlq,
        "--wait", "1", "--visibility", "10", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("where", ["missing_directory", "file_as_parent"])
def test_dlq_export_into_an_unwritable_path_says_so_and_exits_2(local_sqs, sqs, make_queues, tmp_path, where):
    # GIVEN a DLQ with messages, and an --out path that cannot be created
    _, dlq = make_queues()
    dead_letters(sqs, dlq, 5)
    if where == "file_as_parent":
        (tmp_path / "plain-file").write_text("")
        out = tmp_path / "plain-file" / "out.jsonl"
    else:
        out = tmp_path / "no" / "such" / "dir" / "out.jsonl"

    # WHEN the operator exports with --delete
    result = run_cli(*export_args(local_sqs, dlq, out, "--delete"))

    # THEN it says what is wrong with the path (no traceback), exits 2, and deletes nothing
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(out) in result.stderr or str(out.parent) in result.stderr, result.stderr
    wait_until(lambda: queue_counts(sqs, dlq)["visible"] == 5, timeout=15)


def test_dlq_export_that_fills_the_disk_mid_run_exits_1_and_deletes_nothing(
    local_sqs, sqs, make_queues, tmp_path
):
    # GIVEN 30 messages of 3 KB, and room for only 20 KB of export (RLIMIT_FSIZE stands in for a
    # full disk: writes past it fail as ENOSPC would)
    _, dlq = make_queues()
    dead_letters(sqs, dlq, 30, size=3000)
    out = tmp_path / "export.jsonl"

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    # WHEN the operator exports with --delete
    result = run_cli(*export_args(local_sqs, dlq, out, "--delete"), preexec_fn=small_disk)

    # THEN it says the write failed (no traceback), exits 1, and every message is still on the DLQ
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(out) in result.stderr, result.stderr
    wait_until(lambda: queue_counts(sqs, dlq)["visible"] == 30, timeout=15)


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
