"""`sqs-poller dlq ...` end to end: real CLI processes against moto's SQS server on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest

from poller.dev.localsqs import free_port
from tests.conftest import REPO, queue_counts, queue_total, receive_all, wait_until, write_config

pytestmark = pytest.mark.servers

FAILURE = "poller.failure"
REPLAYS = "poller.replays"
FAST = ["--wait", "1", "--visibility", "10"]  # short long polls; the tests' queues are shallow


# --- helpers ------------------------------------------------------------------------------------


def dlq_command(local_sqs: Any, command: str, *args: str, fast: bool = True) -> list[str]:
    base = [sys.executable, "-m", "poller", "dlq", command, "--endpoint-url", local_sqs.endpoint_url]
    return base + (FAST if fast else []) + list(args)


def run_dlq(local_sqs: Any, command: str, *args: str, fast: bool = True, timeout: float = 60) -> Any:
    """Run `python -m poller dlq COMMAND ...` off a terminal; returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k != "SQS_POLLER_CONFIG"}
    return subprocess.run(
        dlq_command(local_sqs, command, *args, fast=fast),
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def summary_of(result: Any, event: str = "replay_summary") -> dict[str, Any]:
    found = [r for r in json_lines(result.stdout) if r.get("event") == event]
    assert found, f"no {event} in output:\n{result.stdout}\n{result.stderr}"
    return found[-1]


def failure(source: str, type_: str = "TimeoutError", error: str = "upstream timed out") -> str:
    return json.dumps(
        {
            "error": error,
            "type": type_,
            "source_queue": source,
            "receive_count": 5,
            "failed_at": "2026-11-26T04:00:00.000+00:00",
            "host": "test",
        }
    )


def dead_letter(
    sqs: Any,
    dlq: str,
    bodies: list[str],
    source: str,
    type_: str = "TimeoutError",
    error: str = "upstream timed out",
    replays: int | None = None,
    group_ids: list[str] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Put messages on the DLQ as the daemon does: original attributes plus poller.failure."""
    for start in range(0, len(bodies), 10):
        entries = []
        for n, body in enumerate(bodies[start : start + 10], start):
            attrs: dict[str, dict[str, Any]] = {
                "tenant": {"DataType": "String", "StringValue": "acme"},
                "n": {"DataType": "Number", "StringValue": str(n)},
                "blob": {"DataType": "Binary", "BinaryValue": bytes([n % 256, 0, 255])},
                FAILURE: {"DataType": "String", "StringValue": failure(source, type_, error)},
                **(extra or {}),
            }
            if replays is not None:
                attrs[REPLAYS] = {"DataType": "Number", "StringValue": str(replays)}
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": body, "MessageAttributes": attrs}
            if group_ids is not None:
                entry["MessageGroupId"] = group_ids[n]
                entry["MessageDeduplicationId"] = uuid.uuid4().hex
            entries.append(entry)
        response = sqs.send_message_batch(QueueUrl=dlq, Entries=entries)
        assert not response.get("Failed"), response["Failed"]


def snapshot(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message on a settled queue: received, then released again."""
    wait_until(lambda: queue_counts(sqs, url)["in_flight"] == 0, timeout=30)
    messages = receive_all(sqs, url, wait=0)  # moto's short polls see every message
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for n, m in enumerate(messages[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    return messages


def bodies_on(sqs: Any, url: str) -> list[str]:
    return [m["Body"] for m in snapshot(sqs, url)]


def drain_fifo(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receive and delete until empty: a FIFO queue hands out a group's next message only then."""
    wait_until(lambda: queue_counts(sqs, url)["in_flight"] == 0, timeout=30)
    out: list[dict[str, Any]] = []
    empty = 0
    while empty < 2:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,  # moto's short polls see every message
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if got:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)],
            )
        out += got
        empty = 0 if got else empty + 1
    return out


# --- replay -----------------------------------------------------------------------------------


def test_replay_preserves_bodies_and_attributes_and_strips_the_failure(local_sqs, sqs, make_queues, tmp_path):
    # GIVEN 200 dead-lettered messages from the main queue, with String, Number and Binary attributes
    url, dlq = make_queues()
    bodies = [json.dumps({"n": n, "pad": "x" * (n % 50)}) for n in range(200)]
    dead_letter(sqs, dlq, bodies, source=url)
    config = write_config(tmp_path, local_sqs, url, dlq)

    # WHEN the operator replays the DLQ named in the config file
    result = run_dlq(local_sqs, "replay", "--config", str(config), "--yes")

    # THEN every message is back on its source queue, exactly once, as it was, minus poller.failure
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert (summary["replayed"], summary["skipped"], summary["failed"]) == (200, 0, 0)
    assert summary["destinations"] == {url: 200}
    messages = receive_all(sqs, url)
    assert sorted(m["Body"] for m in messages) == sorted(bodies)
    for message in messages:
        attrs = message["MessageAttributes"]
        n = json.loads(message["Body"])["n"]
        assert FAILURE not in attrs
        assert attrs["tenant"] == {"DataType": "String", "StringValue": "acme"}
        assert attrs["n"] == {"DataType": "Number", "StringValue": str(n)}
        assert attrs["blob"] == {"DataType": "Binary", "BinaryValue": bytes([n % 256, 0, 255])}
        assert attrs[REPLAYS] == {"DataType": "Number", "StringValue": "1"}
    assert queue_total(sqs, dlq) == 0


def test_filters_max_and_max_replays_select_exactly_the_right_messages(local_sqs, sqs, make_queues):
    # GIVEN 20 order timeouts, 20 invoice validation errors, and 5 order timeouts replayed 3 times already
    url, dlq = make_queues()
    orders = [json.dumps({"kind": "order", "n": n}) for n in range(20)]
    invoices = [json.dumps({"kind": "invoice", "n": n}) for n in range(20)]
    exhausted = [json.dumps({"kind": "order", "n": n, "tired": True}) for n in range(5)]
    dead_letter(sqs, dlq, orders, source=url)
    dead_letter(sqs, dlq, invoices, source=url, type_="ValueError", error="bad amount")
    dead_letter(sqs, dlq, exhausted, source=url, replays=3)
    target = ["--dlq-url", dlq, "--to", url, "--yes"]

    # WHEN replaying timeouts, at most 7
    first = run_dlq(local_sqs, "replay", *target, "--match-error", "Timeout", "--max", "7")

    # THEN exactly 7 fresh order timeouts moved; everything else is still on the DLQ
    assert first.returncode == 0, first.stderr
    assert summary_of(first)["replayed"] == 7
    moved = bodies_on(sqs, url)
    assert len(moved) == 7 and set(moved) <= set(orders)
    assert sorted(bodies_on(sqs, dlq)) == sorted(set(orders + invoices + exhausted) - set(moved))

    # WHEN the filters match nothing (timeouts whose body is an invoice)
    none = run_dlq(local_sqs, "replay", *target, "--match-error", "^TimeoutError", "--match-body", "invoice")

    # THEN all 38 are seen once each, skipped, and released untouched
    assert none.returncode == 0, none.stderr
    summary = summary_of(none)
    assert (summary["replayed"], summary["skipped"]) == (0, 38)
    assert summary["skip_reasons"] == {"match_body": 13 + 5, "match_error": 20}

    # WHEN replaying every timeout
    rest = run_dlq(local_sqs, "replay", *target, "--match-error", "Timeout")

    # THEN the 13 other order timeouts move; invoices and the 5 exhausted ones stay, untouched
    summary = summary_of(rest)
    assert (summary["replayed"], summary["skipped"], summary["failed"]) == (13, 25, 0)
    assert summary["skip_reasons"] == {"match_error": 20, "max_replays": 5}
    assert sorted(bodies_on(sqs, url)) == sorted(orders)
    left = snapshot(sqs, dlq)
    assert sorted(m["Body"] for m in left) == sorted(invoices + exhausted)
    assert all(FAILURE in m["MessageAttributes"] for m in left)


def test_dry_run_changes_nothing_on_either_queue(local_sqs, sqs, make_queues):
    # GIVEN 30 dead-lettered messages
    url, dlq = make_queues()
    bodies = [f"body-{n}" for n in range(30)]
    dead_letter(sqs, dlq, bodies, source=url)
    before = {m["Body"]: m["MessageAttributes"] for m in snapshot(sqs, dlq)}

    # WHEN a dry run replays them (no --yes needed: it changes nothing)
    result = run_dlq(local_sqs, "replay", "--dlq-url", dlq, "--dry-run")

    # THEN it says what it would do, and both queues are as they were
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert (summary["replayed"], summary["would_replay"], summary["dry_run"]) == (0, 30, True)
    plan = [r for r in json_lines(result.stdout) if r.get("event") == "would"]
    assert len(plan) == 30 and {p["detail"] for p in plan} == {url}
    assert queue_total(sqs, url) == 0
    assert queue_counts(sqs, dlq) == {"visible": 30, "in_flight": 0, "delayed": 0}
    after = {m["Body"]: m["MessageAttributes"] for m in snapshot(sqs, dlq)}
    assert after == before


def test_export_then_replay_from_file_round_trips(local_sqs, sqs, make_queues, tmp_path):
    # GIVEN 40 dead-lettered messages
    url, dlq = make_queues()
    bodies = [json.dumps({"n": n}) for n in range(40)]
    dead_letter(sqs, dlq, bodies, source=url)

    # WHEN exported without --delete
    copy = tmp_path / "copy.jsonl"
    result = run_dlq(local_sqs, "export", "--dlq-url", dlq, "--out", str(copy))

    # THEN the file holds them all and the DLQ still does too, nothing left hidden
    assert result.returncode == 0, result.stderr
    assert summary_of(result, "export_summary")["exported"] == 40
    assert len(copy.read_text().splitlines()) == 40
    assert queue_counts(sqs, dlq) == {"visible": 40, "in_flight": 0, "delayed": 0}

    # WHEN exported again to the same file: refused, never overwritten
    again = run_dlq(local_sqs, "export", "--dlq-url", dlq, "--out", str(copy))
    assert again.returncode == 2 and "exists" in again.stderr

    # WHEN exported with --delete, then replayed from the file to the main queue
    moved = tmp_path / "moved.jsonl"
    exported = run_dlq(local_sqs, "export", "--dlq-url", dlq, "--out", str(moved), "--delete")
    assert exported.returncode == 0, exported.stderr
    assert summary_of(exported, "export_summary")["deleted"] == 40
    assert queue_total(sqs, dlq) == 0
    records = [json.loads(line) for line in moved.read_text().splitlines()]
    assert sorted(r["body"] for r in records) == sorted(bodies)
    assert all(r["failure"]["type"] == "TimeoutError" and r["attributes"]["SentTimestamp"] for r in records)
    preview = run_dlq(local_sqs, "replay", "--from-file", str(moved), "--to", url, "--dry-run", "--max", "15")
    assert preview.returncode == 0, preview.stderr
    assert (summary_of(preview)["would_replay"], queue_total(sqs, url)) == (15, 0)
    replayed = run_dlq(local_sqs, "replay", "--from-file", str(moved), "--to", url, "--yes")

    # THEN the main queue has every body with its attributes, poller.failure gone
    assert replayed.returncode == 0, replayed.stderr
    assert summary_of(replayed)["replayed"] == 40
    messages = receive_all(sqs, url)
    assert sorted(m["Body"] for m in messages) == sorted(bodies)
    for message in messages:
        n = json.loads(message["Body"])["n"]
        attrs = message["MessageAttributes"]
        assert attrs["blob"]["BinaryValue"] == bytes([n, 0, 255]) and FAILURE not in attrs
        assert attrs[REPLAYS]["StringValue"] == "1"


def test_fifo_replay_keeps_each_groups_order(local_sqs, sqs, make_queues):
    # GIVEN a FIFO DLQ with three groups interleaved, each in order, with a repeated body in one group
    url, dlq = make_queues(fifo=True)
    groups = ["a", "b", "c"]
    bodies, group_ids = [], []
    for n in range(15):
        for group in groups:
            bodies.append(f"{group}-{n}" if (group, n) != ("a", 7) else "a-6")
            group_ids.append(group)
    dead_letter(sqs, dlq, bodies, source=url, group_ids=group_ids)

    # WHEN replayed to the main FIFO queue
    result = run_dlq(local_sqs, "replay", "--dlq-url", dlq, "--yes")

    # THEN each group arrives complete and in its original order (fresh dedup ids swallow nothing)
    assert result.returncode == 0, result.stderr
    assert summary_of(result)["replayed"] == 45
    arrived = defaultdict(list)
    for message in drain_fifo(sqs, url):
        arrived[message["Attributes"]["MessageGroupId"]].append(message["Body"])
    for group in groups:
        assert arrived[group] == [b for b, g in zip(bodies, group_ids, strict=True) if g == group]
    assert queue_total(sqs, dlq) == 0


def test_sigkill_mid_replay_loses_nothing(local_sqs, sqs, make_queues):
    # GIVEN 60 dead-lettered messages and a slow replay with a 3 s hiding time
    url, dlq = make_queues()
    bodies = [f"m-{n}" for n in range(60)]
    dead_letter(sqs, dlq, bodies, source=url)
    args = ["--dlq-url", dlq, "--yes", "--rate", "10", "--wait", "1", "--visibility", "3"]
    proc = subprocess.Popen(
        dlq_command(local_sqs, "replay", *args, fast=False),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    # WHEN it is killed with SIGKILL part way through
    try:
        wait_until(lambda: queue_total(sqs, url) >= 15, timeout=30, interval=0.05)
    finally:
        proc.kill()
        proc.wait()
    assert queue_total(sqs, url) < 60

    # THEN once the hiding time is over, every message is on the DLQ or the main queue
    time.sleep(3.5)
    found = bodies_on(sqs, dlq) + bodies_on(sqs, url)
    assert set(found) == set(bodies)
    assert len(found) - len(bodies) <= 10  # at worst the batch between send and delete is duplicated


def test_ctrl_c_stops_after_the_current_batch_and_releases_the_rest(local_sqs, sqs, make_queues):
    # GIVEN 60 dead-lettered messages and a slow replay
    url, dlq = make_queues()
    bodies = [f"m-{n}" for n in range(60)]
    dead_letter(sqs, dlq, bodies, source=url)
    proc = subprocess.Popen(
        dlq_command(local_sqs, "replay", "--dlq-url", dlq, "--yes", "--rate", "5"),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    # WHEN it gets SIGINT (Ctrl-C) part way through
    try:
        wait_until(lambda: queue_total(sqs, url) >= 10, timeout=30, interval=0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()

    # THEN it stops cleanly: the summary matches the queues, nothing is left hidden, exit is non-zero
    assert proc.returncode == 1, err
    summary = [r for r in json_lines(out) if r.get("event") == "replay_summary"][-1]
    assert summary["interrupted"] is True and summary["failed"] == 0
    assert 10 <= summary["replayed"] < 60
    assert queue_counts(sqs, dlq) == {"visible": 60 - summary["replayed"], "in_flight": 0, "delayed": 0}
    assert sorted(bodies_on(sqs, dlq) + bodies_on(sqs, url)) == sorted(bodies)


def test_batches_over_one_mib_are_split_not_dropped(local_sqs, sqs, make_queues):
    # GIVEN six 300 KB messages: 1.8 MB, over SendMessageBatch's 1 MiB
    url, dlq = make_queues()
    bodies = [str(n) * 300_000 for n in range(6)]
    for body in bodies:
        attrs = {FAILURE: {"DataType": "String", "StringValue": failure(url)}}
        sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageAttributes=attrs)

    # WHEN replayed
    result = run_dlq(local_sqs, "replay", "--dlq-url", dlq, "--yes")

    # THEN all six arrive
    assert result.returncode == 0, result.stderr
    assert summary_of(result)["replayed"] == 6
    assert sorted(bodies_on(sqs, url)) == sorted(bodies)


# --- stats, peek, purge -----------------------------------------------------------------------


def test_stats_and_peek_show_failures_and_leave_messages_visible(local_sqs, sqs, make_queues):
    # GIVEN 8 timeouts and 4 validation errors on the DLQ
    url, dlq = make_queues()
    dead_letter(sqs, dlq, [f"t-{n}" for n in range(8)], source=url)
    dead_letter(sqs, dlq, ["v" * 500] * 4, source=url, type_="ValueError", error="bad amount")

    # WHEN the operator asks for stats with a sample, then peeks at 5
    stats = run_dlq(local_sqs, "stats", "--dlq-url", dlq, "--sample", "50")
    peek = run_dlq(local_sqs, "peek", "--dlq-url", dlq, "-n", "5")
    full = run_dlq(local_sqs, "peek", "--dlq-url", dlq, "-n", "12", "--json")

    # THEN counts and the failure breakdown are shown, and every message is visible again
    assert stats.returncode == 0, stats.stderr
    rows = json_lines(stats.stdout)
    assert rows[0] == {"table": "DLQ counts", "queue": dlq, "visible": 12, "in_flight": 0, "delayed": 0}
    breakdown = {(r["by"], r["value"]): r["messages"] for r in rows[1:]}
    assert breakdown == {("type", "TimeoutError"): 8, ("type", "ValueError"): 4, ("source_queue", url): 12}
    assert peek.returncode == 0, peek.stderr
    shown = json_lines(peek.stdout)
    assert len(shown) == 5
    assert all(r["type"] in ("TimeoutError", "ValueError") and r["receives"] >= 1 for r in shown)
    assert all(len(r["body"]) <= 80 for r in shown)
    records = json_lines(full.stdout)
    assert len(records) == 12 and {r["failure"]["type"] for r in records} == {"TimeoutError", "ValueError"}
    assert any(r["body"] == "v" * 500 for r in records)
    assert queue_counts(sqs, dlq) == {"visible": 12, "in_flight": 0, "delayed": 0}
    assert "no true peek" in run_dlq(local_sqs, "peek", "--help").stdout


def test_purge_and_replay_refuse_without_yes_off_a_terminal(local_sqs, sqs, make_queues):
    # GIVEN 5 messages on the DLQ
    url, dlq = make_queues()
    dead_letter(sqs, dlq, [f"p-{n}" for n in range(5)], source=url)

    # WHEN purge and replay run without a terminal and without --yes
    purge = run_dlq(local_sqs, "purge", "--dlq-url", dlq)
    replay = run_dlq(local_sqs, "replay", "--dlq-url", dlq)

    # THEN both refuse, saying why, and nothing moves
    assert purge.returncode == 2 and "--yes" in purge.stderr
    assert replay.returncode == 2 and "--yes" in replay.stderr
    assert queue_total(sqs, dlq) == 5 and queue_total(sqs, url) == 0

    # WHEN purge is given --yes: THEN the DLQ is emptied
    purged = run_dlq(local_sqs, "purge", "--dlq-url", dlq, "--yes")
    assert purged.returncode == 0, purged.stderr
    assert json_lines(purged.stdout)[-1]["approximate_messages"] == 5
    wait_until(lambda: queue_total(sqs, dlq) == 0, timeout=10)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["replay", "--rate", "0", "--yes"], 2, "--rate"),
        (["replay", "--match-error", "(", "--yes"], 2, "not a regular expression"),
        (["replay", "--max", "0", "--yes"], 2, "--max"),
        (["peek", "--wait", "5", "--visibility", "5"], 2, "visibility must be within"),
        (["replay", "--from-file", "/nonexistent.jsonl", "--yes"], 2, "does not exist"),
        (["stats", "--dlq-url", "{missing}"], 1, "NonExistentQueue"),
        (["replay", "--to", "{missing}", "--yes"], 1, "NonExistentQueue"),
        (["stats", "--endpoint-url", "{unreachable}"], 1, "Could not connect"),
    ],
)
def test_bad_arguments_and_unreachable_queues_fail_clearly(local_sqs, sqs, make_queues, args, code, says):
    # GIVEN a DLQ with one message
    url, dlq = make_queues()
    dead_letter(sqs, dlq, ["keep me"], source=url)
    missing = url.rsplit("/", 1)[0] + "/no-such-queue"
    unreachable = f"http://127.0.0.1:{free_port()}"
    args = [a.format(missing=missing, unreachable=unreachable) for a in args]
    if "--dlq-url" not in args:
        args += ["--dlq-url", dlq]

    # WHEN the command runs
    result = run_dlq(local_sqs, *args)

    # THEN it exits non-zero with a clear message, and the message is still on the DLQ
    assert result.returncode == code, (result.stdout, result.stderr)
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert queue_counts(sqs, dlq) == {"visible": 1, "in_flight": 0, "delayed": 0}


def test_no_config_and_no_dlq_url_is_a_config_error(local_sqs, tmp_path):
    result = run_dlq(local_sqs, "stats", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2 and "absent.toml" in result.stderr


def test_failed_sends_stay_on_the_dlq_untouched_and_exit_non_zero(local_sqs, sqs, make_queues):
    # GIVEN 5 messages from the main queue and 3 from a queue that no longer exists
    url, dlq = make_queues()
    gone = url.rsplit("/", 1)[0] + "/deleted-queue"
    dead_letter(sqs, dlq, [f"ok-{n}" for n in range(5)], source=url)
    dead_letter(sqs, dlq, [f"lost-{n}" for n in range(3)], source=gone)

    # WHEN replayed to each message's source queue
    result = run_dlq(local_sqs, "replay", "--dlq-url", dlq, "--yes")

    # THEN 5 move, 3 fail and stay on the DLQ as they were (still annotated), and the exit is 1
    assert result.returncode == 1
    summary = summary_of(result)
    assert (summary["replayed"], summary["failed"]) == (5, 3)
    assert any("NonExistentQueue" in e or "QueueDoesNotExist" in e for e in summary["errors"])
    assert sorted(bodies_on(sqs, url)) == [f"ok-{n}" for n in range(5)]
    left = snapshot(sqs, dlq)
    assert sorted(m["Body"] for m in left) == [f"lost-{n}" for n in range(3)]
    assert all(FAILURE in m["MessageAttributes"] for m in left)


class FailingSends:
    """A real boto3 client whose SendMessageBatch reports bodies starting "fail" as Failed entries."""

    def __init__(self, client: Any):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        good = [e for e in Entries if not e["MessageBody"].startswith("fail")]
        response = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=good) if good else {}
        failed = [
            {"Id": e["Id"], "Code": "InternalError", "Message": "injected", "SenderFault": False}
            for e in Entries
            if e not in good
        ]
        return {"Successful": response.get("Successful", []), "Failed": failed}


# fauxqs hands out one message of a FIFO group per receive; SQS hands out several, in order.
FAUXQS_ONE_PER_GROUP = pytest.mark.quirk(
    "fauxqs", "a FIFO receive returns at most one message of each group, so no batch holds the group"
)


@pytest.mark.parametrize("fifo", [False, pytest.param(True, marks=FAUXQS_ONE_PER_GROUP)])
def test_partly_failed_batches_delete_only_what_was_sent(local_sqs, sqs, make_queues, fifo):
    # GIVEN 10 messages of one group on the DLQ, the 4th of which the destination will refuse
    from poller.ops.dlq import Polling
    from poller.ops.replay import ReplayOptions, replay_queue
    from poller.sqs import Sqs

    url, dlq = make_queues(fifo=fifo)
    bodies = [f"m-{n}" if n != 3 else "fail-3" for n in range(10)]
    dead_letter(sqs, dlq, bodies, source=url, group_ids=["g"] * 10 if fifo else None)

    # WHEN replayed in one batch
    summary = replay_queue(Sqs(FailingSends(sqs)), dlq, ReplayOptions(), Polling(wait=1, visibility=10))

    # THEN only what was sent left the DLQ, and the refused one is still there
    assert (summary.replayed, summary.failed) == (9, 1)
    moved = [m["Body"] for m in drain_fifo(sqs, url)] if fifo else bodies_on(sqs, url)
    assert sorted(moved) == sorted(b for b in bodies if b != "fail-3")
    assert queue_counts(sqs, dlq) == {"visible": 1, "in_flight": 0, "delayed": 0}
    assert bodies_on(sqs, dlq) == ["fail-3"]
    # AND on FIFO, the six sent after it in the same batch are reported as out of order
    assert summary.out_of_order == (6 if fifo else 0)


@FAUXQS_ONE_PER_GROUP
def test_fifo_group_behind_a_skipped_message_stays_in_order_for_the_next_run(local_sqs, sqs, make_queues):
    # GIVEN a FIFO DLQ: group "a" whose 3rd message is an invoice, and group "b" of orders only
    url, dlq = make_queues(fifo=True)
    bodies = [f"a-{n}" if n != 2 else "a-2-invoice" for n in range(6)] + [f"b-{n}" for n in range(6)]
    dead_letter(sqs, dlq, bodies, source=url, group_ids=["a"] * 6 + ["b"] * 6)

    # WHEN replaying everything but invoices
    result = run_dlq(local_sqs, "replay", "--dlq-url", dlq, "--yes", "--match-body", "^[ab]-[0-9]$")

    # THEN group b moves whole; group a moves only up to the skipped message, which holds the rest back
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert (summary["replayed"], summary["skipped"]) == (8, 4)
    assert summary["skip_reasons"] == {"match_body": 1, "behind_in_group": 3}
    arrived = defaultdict(list)
    for message in drain_fifo(sqs, url):
        arrived[message["Attributes"]["MessageGroupId"]].append(message["Body"])
    assert arrived == {"a": ["a-0", "a-1"], "b": [f"b-{n}" for n in range(6)]}
    assert [m["Body"] for m in drain_fifo(sqs, dlq)] == ["a-2-invoice", "a-3", "a-4", "a-5"]


def test_replay_entries_route_and_annotate_as_documented():
    from poller.message import Message
    from poller.ops.replay import ReplayOptions, decide, replay_entry

    # GIVEN a message the daemon dead-lettered from "jobs.fifo", and one from SQS's redrive backstop
    def message(attrs: dict[str, dict[str, Any]], group: str | None = "g1") -> Message:
        system = {"MessageGroupId": group} if group else {}
        raw = {"MessageId": "id-1", "Body": "body", "Attributes": system, "MessageAttributes": attrs}
        return Message.from_sqs({**raw, "ReceiptHandle": "r"}, "https://q/jobs-dlq.fifo")

    failed = message(
        {
            FAILURE: {"DataType": "String", "StringValue": failure("https://q/jobs.fifo", error="boom")},
            REPLAYS: {"DataType": "Number", "StringValue": "1"},
            "tenant": {"DataType": "String", "StringValue": "acme"},
        }
    )
    backstop = message({}, group=None)
    full = message({f"a{n}": {"DataType": "String", "StringValue": "v"} for n in range(10)}, group=None)

    # WHEN routed: THEN --to wins, then the failure's source queue, then the config's queue
    assert decide(failed, ReplayOptions(to="https://q/other")) == ("https://q/other", None)
    assert decide(failed, ReplayOptions(default_destination="https://q/main")) == (
        "https://q/jobs.fifo",
        None,
    )
    assert decide(backstop, ReplayOptions(default_destination="https://q/main")) == ("https://q/main", None)
    assert decide(backstop, ReplayOptions()) == (None, "no_destination")
    assert decide(failed, ReplayOptions(max_replays=1, to="x")) == (None, "max_replays")
    assert decide(backstop, ReplayOptions(match_error=re.compile("boom"), to="x")) == (None, "match_error")

    # WHEN built into entries: THEN failure stripped, replays counted up, FIFO group kept, dedup fresh
    first, second = (replay_entry(failed, "https://q/jobs.fifo", "0") for _ in range(2))
    assert set(first["MessageAttributes"]) == {"tenant", REPLAYS}
    assert first["MessageAttributes"][REPLAYS] == {"DataType": "Number", "StringValue": "2"}
    assert (
        first["MessageGroupId"] == "g1"
        and first["MessageDeduplicationId"] != second["MessageDeduplicationId"]
    )
    # AND a standard queue keeps the group (a fair queue's tenant) and is given no deduplication id
    standard = replay_entry(failed, "https://q/standard", "0")
    assert standard["MessageGroupId"] == "g1" and "MessageDeduplicationId" not in standard
    # AND a message already at SQS's ten attributes is sent without the counter rather than refused
    assert len(replay_entry(full, "https://q/x", "0")["MessageAttributes"]) == 10
