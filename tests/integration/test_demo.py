"""`sqs-poller demo` on a fresh process: embedded endpoint, sample traffic, a summary, exit 0."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_daemon import run_cli


def test_demo_settles_and_accounts_for_every_message():
    # WHEN the demo runs with 120 sample messages (JSON output off a terminal), the sample legacy
    # system going down for 15 s once a third are handled
    result = run_cli("demo", "--messages", "120", timeout=180)

    # THEN it exits 0 and its summary accounts for every message
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = {r["figure"]: r["value"] for r in rows if r.get("table") == "sqs-poller demo"}
    assert summary["messages sent"] == 120
    assert summary["handled (deleted)"] + summary["in the DLQ now"] == 120
    assert summary["dead-lettered"] == summary["in the DLQ now"] > 0
    assert summary["retries"] > 0
    # AND the legacy system's outage paused polling and dead-lettered nothing
    assert float(summary["legacy system down (seconds)"]) >= 14
    assert summary["circuit breaker openings"] >= 1
    assert float(summary["polling paused (seconds)"]) >= 10
    assert summary["dead-lettered by the outage"] == 0
    # AND one daemon served three queues, each accounted for (billing and audit kept going)
    queues = {r["queue"]: r for r in rows if r.get("table") == "queues (one daemon)"}
    assert set(queues) == {"mailbox", "billing", "audit"}
    assert queues["billing"]["priority"] > queues["mailbox"]["priority"] > queues["audit"]["priority"]
    for row in queues.values():
        assert row["handled"] + row["in its DLQ"] == row["sent"] > 0
    why = [r for r in rows if r.get("table") == "dead-lettered: why (poller.failure)"]
    assert why and all(r["error"] for r in why)
    # AND while the traffic ran it printed progress lines, not the daemon's logs
    progress = [r for r in rows if r.get("demo") == "progress"]
    assert progress and max(r["handled"] for r in progress) > 0 and "breaker" in progress[0]
    assert not any("event" in r for r in rows)
    # AND it named the file the daemon's logs went to
    (note,) = [r["note"] for r in rows if "daemon's logs" in r.get("note", "")]
    log = Path(note.rsplit(" ", 1)[1])
    events = {json.loads(line).get("event") for line in log.read_text().splitlines() if line.startswith("{")}
    assert {"supervisor_started", "worker_started", "supervisor_stopped"} <= events
    log.unlink()


def test_lambda_demo_runs_the_unchanged_powertools_function():
    # WHEN the Lambda demo runs the example function with 100 orders
    result = run_cli("demo", "--lambda", "--messages", "100", timeout=180)

    # THEN every order is accounted for: handled by the function, filtered, or dead-lettered
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = {
        r["figure"]: r["value"]
        for r in rows
        if str(r.get("table", "")).startswith("sqs-poller demo --lambda")
    }
    assert summary["orders sent"] == 100
    handled, filtered = (
        summary["handled by the function (deleted)"],
        summary["filtered out by the filter pattern"],
    )
    assert handled + filtered + summary["in the DLQ now"] == 100
    assert handled > 0 and filtered > 0 and summary["in the DLQ now"] > 0
    assert summary["retried (batchItemFailures)"] >= summary["in the DLQ now"]
