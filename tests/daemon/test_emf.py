"""Per-version figures: the exact embedded metric format record CloudWatch turns into
metrics, and the reporter's deltas. The Terraform alarms read these names."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from poller.daemon.emf import METRICS, EmfReporter, read_outcome_totals, render_emf_record

ROOT = Path(__file__).resolve().parents[2]


def test_record_has_the_exact_emf_shape():
    # GIVEN one minute's counts of version ami-0abc/v7 of deployment jobs
    counts = {"Deleted": 120, "DeadLettered": 2, "HandlerErrors": 5}
    # WHEN it is rendered
    record = render_emf_record("SQSPoller/jobs", "jobs", "v7", counts, 1_700_000_000_000)
    # THEN it is exactly the EMF document: metadata, dimension values and metric values
    assert record == {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "SQSPoller/jobs",
                    "Dimensions": [["Deployment", "Version"], ["Deployment"]],
                    "Metrics": [
                        {"Name": "Deleted", "Unit": "Count"},
                        {"Name": "DeadLettered", "Unit": "Count"},
                        {"Name": "HandlerErrors", "Unit": "Count"},
                    ],
                }
            ],
        },
        "event": "emf_metrics",
        "Deployment": "jobs",
        "Version": "v7",
        "Deleted": 120,
        "DeadLettered": 2,
        "HandlerErrors": 5,
    }


def test_record_follows_the_emf_specification_rules():
    record = render_emf_record("SQSPoller/jobs", "jobs", "v7", {"DeadLettered": 1}, 1)
    directive = record["_aws"]["CloudWatchMetrics"][0]
    # Every dimension and metric named in the directive is a top-level member.
    for dimension_set in directive["Dimensions"]:
        assert 1 <= len(dimension_set) <= 30
        assert all(isinstance(record[name], str) for name in dimension_set)
    for metric in directive["Metrics"]:
        assert isinstance(record[metric["Name"]], int | float)
    # Only metrics with a value are declared.
    assert [m["Name"] for m in directive["Metrics"]] == ["DeadLettered"]
    # The CloudWatch agent switches a log group to EMF on exactly this test.
    line = json.dumps(record)
    assert line.startswith("{") and line.endswith("}") and '"CloudWatchMetrics"' in line


@pytest.mark.parametrize(
    "args",
    [
        ("", "jobs", "v7", {}),
        ("SQSPoller/jobs", "jobs", "", {}),
        ("SQSPoller/jobs", "jobs", "v7", {"Mystery": 1}),
    ],
)
def test_record_refuses_what_cloudwatch_would_drop(args):
    with pytest.raises(ValueError):
        render_emf_record(*args, timestamp_ms=1)


def test_reporter_writes_deltas_one_json_line_a_call():
    # GIVEN a reporter writing to a stream
    stream = io.StringIO()
    reporter = EmfReporter("SQSPoller/jobs", "jobs", "v7", stream=stream)
    # WHEN the supervisor reports running totals three minutes in a row, the third after
    # the counters restarted
    reporter.report({"Deleted": 10, "DeadLettered": 1, "HandlerErrors": 3}, now=60)
    reporter.report({"Deleted": 25, "DeadLettered": 1, "HandlerErrors": 4}, now=120)
    reporter.report({"Deleted": 4, "DeadLettered": 0, "HandlerErrors": 0}, now=180)
    # THEN each line holds the counts of its own minute, zeros included
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    figures = [{name: line[name] for name in METRICS} for line in lines]
    assert figures == [
        {"Deleted": 10, "DeadLettered": 1, "HandlerErrors": 3},
        {"Deleted": 15, "DeadLettered": 0, "HandlerErrors": 1},
        {"Deleted": 4, "DeadLettered": 0, "HandlerErrors": 0},
    ]
    assert [line["_aws"]["Timestamp"] for line in lines] == [60_000, 120_000, 180_000]
    assert {line["Version"] for line in lines} == {"v7"}


def test_terraform_alarms_read_the_names_the_daemon_writes():
    # GIVEN the module's per-version alarms
    alarms = (ROOT / "terraform" / "alarms.tf").read_text()
    # THEN they use the EMF metric and dimension names exactly as rendered here
    for name in ("DeadLettered", "HandlerErrors"):
        assert re.search(rf'metric_name\s*=\s*"{name}"', alarms), name
    assert "Deployment" in alarms and "Version" in alarms


def test_totals_come_from_every_worker_processes_counters(tmp_path):
    # GIVEN two worker processes that settled messages (Prometheus multiprocess files)
    script = (
        "from poller.daemon.metrics import Metrics\n"
        "import sys\n"
        "m = Metrics()\n"
        "m.outcome['deleted'].inc(int(sys.argv[1]))\n"
        "m.outcome['retried'].inc(int(sys.argv[2]))\n"
        "m.outcome['dead_lettered'].inc(int(sys.argv[3]))\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for counts in (("7", "2", "1"), ("5", "1", "0")):
        subprocess.run([sys.executable, "-c", script, *counts], env=env, check=True, cwd=ROOT)
    # WHEN the supervisor reads the totals
    totals = read_outcome_totals(str(tmp_path))
    # THEN they are the sums over both processes, under the EMF names
    assert totals == {"Deleted": 12.0, "DeadLettered": 1.0, "HandlerErrors": 3.0}


def test_the_daemon_writes_its_release_figures_as_emf_lines(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    from tests.conftest import queue_total, send_bodies, wait_until, write_config

    # GIVEN a daemon labelled with its release, and 3 good messages and 1 poison one
    url, dlq = make_queues()
    send_bodies(sqs, url, ["a", "b", "c"])
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.sample_handlers:noop"},
        metrics={"emf_namespace": "SqsPoller", "deployment": "jobs", "version": "ami-0abc/cfg-12"},
    )
    daemon = daemon_factory(config)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=30)
    # WHEN it stops (the last partial minute is written then)
    assert daemon.stop() == 0
    # THEN stdout carries EMF records whose figures add up to what the release did
    records = [r for r in daemon.logs() if r.get("event") == "emf_metrics"]
    assert records and all(r["Version"] == "ami-0abc/cfg-12" and r["Deployment"] == "jobs" for r in records)
    assert sum(r["Deleted"] for r in records) == 3
    assert sum(r["DeadLettered"] for r in records) == 0
    assert records[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "SqsPoller"


def test_the_daemon_publishes_seconds_per_message_a_queue_and_its_slots_every_10_s(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    from tests.conftest import queue_total, send_bodies, wait_until, write_config

    # GIVEN a daemon with EMF on, 2 processes of 10 slots, and messages of 0.2 s
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.sample_handlers:slow"},
        metrics={"emf_namespace": "SqsPoller", "deployment": "jobs", "version": "v1"},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, ['{"sleep": 0.2}'] * 6)
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=30)

    def scaling() -> list[dict]:
        return [r for r in daemon.logs() if r.get("event") == "emf_scaling"]

    # WHEN the next 10-s boundaries pass
    wait_until(lambda: any(r.get("SecondsPerMessage") for r in scaling()), timeout=25)
    assert daemon.stop() == 0
    # THEN the queue's figure is its handler time, high resolution, on a 10-s boundary
    seconds = [r for r in scaling() if "SecondsPerMessage" in r and r["SecondsPerMessage"]]
    name = url.rpartition("/")[2]
    assert seconds and seconds[-1]["Queue"] == name and 0.19 < seconds[-1]["SecondsPerMessage"] < 0.5
    metric = seconds[-1]["_aws"]["CloudWatchMetrics"][0]
    assert metric["Dimensions"] == [["Deployment", "Queue"]]
    assert metric["Metrics"][0]["StorageResolution"] == 1
    assert seconds[-1]["_aws"]["Timestamp"] % 10000 == 0
    # AND Slots says what this instance can hold: 2 processes x 10
    slots = [r["Slots"] for r in scaling() if "Slots" in r]
    assert slots and set(slots) == {20}


def test_the_daemon_publishes_the_backlog_it_sees_on_its_queue_every_10_s(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    from tests.conftest import send_bodies, wait_until, write_config

    # GIVEN a daemon of one slot, EMF on, whose queue assumes 6 s a message until measured
    url, dlq = make_queues()
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        queue={"seconds_per_message": 6.0, "visibility_timeout": 60},
        handler={"target": "tests.sample_handlers:slow"},
        workers={"processes": 1, "concurrency": 1, "shutdown_grace": 20},
        metrics={"emf_namespace": "SqsPoller", "deployment": "jobs", "version": "v1"},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    # WHEN 10 messages of 6 s wait: the one slot takes one at a time (at most two by the next
    # boundary), the rest stay visible
    send_bodies(sqs, url, ['{"sleep": 6}'] * 10)

    def backlog() -> list[dict]:
        return [r for r in daemon.logs() if r.get("event") == "emf_scaling" and r.get("BacklogSeconds")]

    wait_until(lambda: backlog(), timeout=25)
    samples = {k: v for k, v in daemon.scrape().items() if "GetQueueAttributes" in k and '"ok"' in k}
    assert samples and sum(samples.values()) >= 1, daemon.scrape()
    assert daemon.stop() == 0
    # THEN the next boundary's BacklogSeconds is the visible messages (8 to 10 then) x about 6 s
    record = backlog()[0]
    assert 8 * 6.0 <= record["BacklogSeconds"] <= 10 * 6.6, record
    assert record["_aws"]["Timestamp"] % 10000 == 0
    metric = record["_aws"]["CloudWatchMetrics"][0]
    assert metric["Dimensions"] == [["Deployment"]] and record["Deployment"] == "jobs"
    assert metric["Metrics"] == [{"Name": "BacklogSeconds", "Unit": "Seconds", "StorageResolution": 1}]
    # AND Slots rides along on the same boundary
    slots = [
        r for r in daemon.logs() if r.get("Slots") and r["_aws"]["Timestamp"] == record["_aws"]["Timestamp"]
    ]
    assert [r["Slots"] for r in slots] == [1]
