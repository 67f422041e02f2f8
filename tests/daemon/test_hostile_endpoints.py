"""Crash-proofing under hostile endpoints (issue 10), fast versions: the DLQ move that must fit
SQS's size limit, one request a call, readiness, and `dlq export` into a path it cannot write.
The real daemon and CLI, some behind the fault-injecting proxy (tests/faultproxy.py); the
hostile handlers' tests are in test_hostile.py.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import queue_counts, queue_total, receive_all, send_bodies, wait_until
from tests.daemon.test_hostile import failure_of, hostile_config, readyz, run_cli, wait_alive
from tests.faultproxy import SQS_MAX_BYTES, FaultProxy


@pytest.fixture
def proxy(local_sqs: Any) -> Iterator[FaultProxy]:
    with FaultProxy(local_sqs.endpoint_url) as running:
        yield running


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
