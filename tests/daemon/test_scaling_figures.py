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
        defaults={"orders": 1.0, "audit": 0.5},
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


# --- BacklogSeconds -------------------------------------------------------------------------


def test_backlog_seconds_is_visible_times_seconds_per_message_summed_over_the_queues():
    # GIVEN orders measured at 2 s a message in the last minute; audit never measured (0.5 s assumed)
    totals = {"orders": (50.0, 100.0)}
    scaling, out = figures(totals)
    scaling.tick(1000.0, ready=True, visible={"orders": 0, "audit": 0})
    totals["orders"] = (90.0, 120.0)
    # WHEN 30 orders and 40 audit records are visible at the next boundary
    records = by_metric(scaling.tick(1010.0, ready=True, visible={"orders": 30, "audit": 40}))
    # THEN the instance publishes 30 x 2 + 40 x 0.5 = 80 slot-seconds, one high-resolution
    # metric dimensioned by Deployment only, on the boundary, next to its Slots
    record = records[("BacklogSeconds", None)]
    assert record["BacklogSeconds"] == 80.0
    assert record["_aws"] == {
        "Timestamp": 1010000,
        "CloudWatchMetrics": [
            {
                "Namespace": "SQSPoller/app",
                "Dimensions": [["Deployment"]],
                "Metrics": [{"Name": "BacklogSeconds", "Unit": "Seconds", "StorageResolution": 1}],
            }
        ],
    }
    assert (record["event"], record["Deployment"], "Queue" in record) == ("emf_scaling", "prod", False)
    assert records[("Slots", None)]["Slots"] == 20
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["BacklogSeconds"] for r in lines if "BacklogSeconds" in r] == [0.0, 80.0]


def test_a_halted_queue_counts_nothing_however_deep_it_is():
    # GIVEN orders' breaker open (or paused) on this host, with 1,000 visible
    scaling, _ = figures({"orders": (10.0, 5.0)}, halted={"orders"})
    # WHEN the boundary's sample sees them and 10 audit records
    records = by_metric(scaling.tick(10.0, ready=True, visible={"orders": 1000, "audit": 10}))
    # THEN only audit counts: more instances would not drain orders
    assert records[("BacklogSeconds", None)]["BacklogSeconds"] == 5.0


def test_no_backlog_seconds_for_a_failed_sample_nor_while_not_ready():
    scaling, _ = figures({"orders": (10.0, 5.0)})
    # GIVEN a boundary whose GetQueueAttributes failed (visible None)
    records = by_metric(scaling.tick(10.0, ready=True, visible=None))
    # THEN nothing is published for it, not 0 (which would scale the group in); Slots still are
    assert ("BacklogSeconds", None) not in records and ("Slots", None) in records
    # AND a daemon not ready (starting, draining) publishes neither
    records = by_metric(scaling.tick(20.0, ready=False, visible={"orders": 5, "audit": 5}))
    assert ("BacklogSeconds", None) not in records and ("Slots", None) not in records


def test_an_idle_fleet_publishes_zero_backlog():
    scaling, _ = figures({})
    records = by_metric(scaling.tick(10.0, ready=True, visible={"orders": 0, "audit": 0}))
    assert records[("BacklogSeconds", None)]["BacklogSeconds"] == 0.0


# --- the `scaling` thread (backlog.py) ------------------------------------------------------


class FakeSqs:
    def __init__(self, depth: int | Exception, delay: float = 0.0):
        self.depth, self.delay, self.calls = depth, delay, []

    def attributes(self, url, names):
        import time

        self.calls.append((url, tuple(names)))
        time.sleep(self.delay)
        if isinstance(self.depth, Exception):
            raise self.depth
        return {"ApproximateNumberOfMessages": str(self.depth)}


class Log:
    def __init__(self):
        self.events = []

    def warning(self, event, **kw):
        self.events.append((event, kw))

    info = exception = warning


def test_queue_depths_asks_each_queue_once_and_fails_the_whole_sample_on_any_error():
    from poller.daemon.backlog import QueueDepths
    from poller.errors import SqsError

    log = Log()
    orders, audit = FakeSqs(7), FakeSqs(3)
    depths = QueueDepths({"orders": (orders, "u1"), "audit": (audit, "u2")}, log)
    assert depths.sample() == {"orders": 7, "audit": 3}
    assert orders.calls == [("u1", ("ApproximateNumberOfMessages",))] and len(audit.calls) == 1
    # WHEN one queue's request fails
    audit.depth = SqsError("GetQueueAttributes", "AccessDenied", "no", False)
    # THEN the sample is None (no BacklogSeconds that boundary), logged once, not every time
    assert depths.sample() is None and depths.sample() is None
    assert [e for e, _ in log.events] == ["backlog_sample_failed"]
    audit.depth = 0
    assert depths.sample() == {"orders": 7, "audit": 0}
    assert log.events[-1][0] == "backlog_sample_recovered"
    depths.close()


def test_a_request_slower_than_the_budget_fails_the_sample_without_waiting_for_it(monkeypatch):
    import time

    from poller.daemon import backlog

    monkeypatch.setattr(backlog, "SAMPLE_BUDGET", 0.2)
    depths = backlog.QueueDepths({"orders": (FakeSqs(1, delay=2.0), "u1")}, Log())
    started = time.monotonic()
    assert depths.sample() is None
    assert time.monotonic() - started < 1.0
    depths.close()


def test_a_turn_samples_the_queues_then_publishes_that_boundary_and_not_ready_asks_nothing():
    from poller.daemon.backlog import QueueDepths, ScalingThread

    scaling, _ = figures({})
    orders = FakeSqs(4)
    depths = QueueDepths({"orders": (orders, "u1"), "audit": (FakeSqs(0), "u2")}, Log())
    ready = {"now": True}
    thread = ScalingThread(scaling, depths, lambda: ready["now"], Log(), print, clock=lambda: 100.05)
    records = by_metric(thread.turn())
    assert records[("BacklogSeconds", None)]["BacklogSeconds"] == 4.0  # 4 x the 1 s assumed
    assert records[("BacklogSeconds", None)]["_aws"]["Timestamp"] == 100000
    # AND a daemon not ready sends no request at all
    ready["now"], thread.clock = False, lambda: 110.05
    thread.turn()
    assert len(orders.calls) == 1
    depths.close()


def test_the_scaling_thread_survives_a_turn_that_raises():
    import time

    from poller.daemon.backlog import QueueDepths, ScalingThread

    scaling, out = figures({})
    depths = QueueDepths({"orders": (FakeSqs(2), "u1"), "audit": (FakeSqs(0), "u2")}, Log())
    calls, errors = [], []

    def ready():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return True

    # GIVEN a clock always just before a boundary (each wait about 60 ms)
    thread = ScalingThread(scaling, depths, ready, Log(), errors.append, clock=lambda: 99.99)
    thread.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    thread.stop()
    # THEN the failed turn was counted against the `scaling` thread and the loop went on
    assert errors == ["scaling"] and len(calls) >= 3
    assert any('"BacklogSeconds":2.0' in line for line in out.getvalue().splitlines())
    assert not thread.thread.is_alive()
