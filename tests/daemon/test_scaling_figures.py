"""What each instance publishes for the fleet's scaling policy (poller/daemon/scaling.py): per
queue the mean handler seconds of the last 60 s, 0 while its breaker is open, the last value
while nothing finished, nothing before anything has; and Slots while ready, on 10-s boundaries,
as high-resolution EMF."""

from __future__ import annotations

import io
import json

from poller.daemon.scaling import ScalingFigures, handler_totals


def figures(totals: dict, halted: set | None = None) -> tuple[ScalingFigures, io.StringIO]:
    out = io.StringIO()
    scaling = ScalingFigures(
        "SQSPoller/app",
        "prod",
        ["orders", "audit"],
        20,
        lambda: dict(totals),
        lambda q: q in (halted or set()),
        out,
    )
    return scaling, out


def by_metric(records: list[dict]) -> dict:
    return {(r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], r.get("Queue")): r for r in records}


def test_seconds_per_message_is_the_mean_over_the_last_minute_and_slots_ride_along():
    # GIVEN orders' handlers took 50 s over 100 messages so far, audit never ran
    totals = {"orders": (50.0, 100.0)}
    scaling, out = figures(totals)
    assert scaling.tick(1000.0, ready=True)
    # WHEN 20 more orders take 40 s within the next 10 s
    totals["orders"] = (90.0, 120.0)
    records = by_metric(scaling.tick(1010.0, ready=True))
    # THEN orders publishes 40/20 = 2 s over the window; audit nothing; Slots 20
    assert records[("SecondsPerMessage", "orders")]["SecondsPerMessage"] == 2.0
    assert ("SecondsPerMessage", "audit") not in records
    assert records[("Slots", None)]["Slots"] == 20
    record = records[("Slots", None)]
    assert record["_aws"]["Timestamp"] == 1010000
    assert record["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"] == 1
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()].count("emf_scaling") == 4


def test_old_messages_leave_the_window_and_a_quiet_queue_repeats_its_last_value():
    totals = {"orders": (10.0, 10.0)}
    scaling, _ = figures(totals)
    scaling.tick(0.0, ready=True)
    totals["orders"] = (40.0, 20.0)  # ten messages of 3 s
    for t in range(10, 70, 10):
        scaling.tick(float(t), ready=True)
    # WHEN a minute later nothing else finished
    records = by_metric(scaling.tick(80.0, ready=True))
    # THEN the value is the last one, 3 s, not an average over the old messages too
    assert records[("SecondsPerMessage", "orders")]["SecondsPerMessage"] == 3.0


def test_a_queue_whose_breaker_is_open_publishes_zero_and_no_slots_while_not_ready():
    scaling, _ = figures({"orders": (10.0, 5.0)}, halted={"orders"})
    records = by_metric(scaling.tick(10.0, ready=False))
    assert records[("SecondsPerMessage", "orders")]["SecondsPerMessage"] == 0.0
    assert ("Slots", None) not in records


def test_one_record_a_boundary_at_most():
    scaling, _ = figures({"orders": (1.0, 1.0)})
    assert scaling.tick(20.0, ready=True)
    assert scaling.tick(25.0, ready=True) == []
    assert scaling.tick(29.9, ready=True) == []
    assert scaling.tick(30.0, ready=True)


def test_handler_totals_read_per_queue_sums_and_counts_from_a_metrics_page():
    page = "\n".join(
        [
            'sqs_poller_handler_seconds_sum{queue="orders"} 12.5',
            'sqs_poller_handler_seconds_count{queue="orders"} 5.0',
            'sqs_poller_handler_seconds_bucket{le="0.1",queue="orders"} 1.0',
            'sqs_poller_handler_seconds_count{queue="audit"} 0.0',
        ]
    )
    assert handler_totals(page) == {"orders": (12.5, 5.0), "audit": (0.0, 0.0)}
