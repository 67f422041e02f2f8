"""Several queues in one daemon, from outside: the real daemon against a local SQS server, with
[queues.NAME] tables. Each queue's own handler, DLQ and labels; strict priority; no stall behind
an empty high-priority queue; max_concurrency; one queue's outage pauses that queue only; a
handler that cannot load names its queue; a reload adds a queue."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

from tests.conftest import queue_counts, receive_all, send_bodies, wait_until, write_queues_config

EMPTY = {"visible": 0, "in_flight": 0, "delayed": 0}
TAGGED = {"target": "tests.model_handlers:tagged"}


def starts(daemon, queue_url: str | None = None) -> list[dict]:
    name = queue_url.rpartition("/")[2] if queue_url else None
    return [r for r in daemon.handled() if r.get("phase") == "start" and (name is None or r["queue"] == name)]


def test_each_queue_has_its_handler_dlq_labels_and_log_field(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN three queues, two handlers, each queue with its own DLQ
    (a, a_dlq), (b, b_dlq), (c, c_dlq) = make_queues(), make_queues(), make_queues()
    config = write_queues_config(
        tmp_path,
        local_sqs,
        {
            "mailbox": {"url": a, "dlq_url": a_dlq, "handler": TAGGED},
            "billing": {"url": b, "dlq_url": b_dlq, "priority": 5, "handler": TAGGED},
            "audit": {
                "url": c,
                "dlq_url": c_dlq,
                "priority": -1,
                "handler": {"target": "tests.model_handlers:tagged_other"},
            },
        },
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    # WHEN each gets traffic, and mailbox and billing one poison message each
    send_bodies(sqs, a, ["m1", "m2", "poison"])
    send_bodies(sqs, b, ["b1", "poison"])
    send_bodies(sqs, c, ["c1", "c2"])
    for url in (a, b, c):
        wait_until(lambda u=url: queue_counts(sqs, u) == EMPTY, timeout=30)
    # THEN each queue's messages ran its own handler
    records = daemon.handled()
    assert {r["body"] for r in records if r["phase"] == "other"} == {"c1", "c2"}
    assert all(r["queue"] != c.rpartition("/")[2] for r in records if r["phase"] == "start")
    # AND each poison went to its own queue's DLQ, naming the queue in poller.failure
    for dlq, name in ((a_dlq, "mailbox"), (b_dlq, "billing")):
        (moved,) = receive_all(sqs, dlq)
        assert json.loads(moved["MessageAttributes"]["poller.failure"]["StringValue"])["queue"] == name
    assert queue_counts(sqs, c_dlq) == EMPTY
    # AND the metrics are labelled by queue, and per-message log lines carry the queue
    metrics = daemon.scrape()
    assert metrics['sqs_poller_messages_total{outcome="deleted",queue="mailbox"}'] == 2
    assert metrics['sqs_poller_messages_total{outcome="dead_lettered",queue="billing"}'] == 1
    assert metrics['sqs_poller_messages_total{outcome="deleted",queue="audit"}'] == 2
    assert metrics['sqs_poller_received_total{queue="billing"}'] == 2
    assert any(k.startswith("sqs_poller_sqs_requests_total") and 'queue="audit"' in k for k in metrics)
    dead = [r for r in daemon.logs() if r.get("event") == "message_dead_lettered"]
    assert sorted(r["queue"] for r in dead) == ["billing", "mailbox"]
    assert daemon.stop() == 0


def test_an_empty_high_priority_queue_never_stalls_a_lower_one(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN an empty high-priority queue polled with 20 s long polls, and a low one with work
    (high, high_dlq), (low, low_dlq) = make_queues(), make_queues()
    config = write_queues_config(
        tmp_path,
        local_sqs,
        {
            "high": {
                "url": high,
                "dlq_url": high_dlq,
                "priority": 10,
                "wait_time_seconds": 20,
                "handler": TAGGED,
            },
            "low": {"url": low, "dlq_url": low_dlq, "wait_time_seconds": 20, "handler": TAGGED},
        },
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    # WHEN 40 messages arrive on the low queue
    sent = time.monotonic()
    send_bodies(sqs, low, [f"l{n}" for n in range(40)])
    # THEN they are all handled in far less than one 20 s turn of the high queue's poll
    wait_until(lambda: len(starts(daemon, low)) >= 40, timeout=15)
    assert time.monotonic() - sent < 10
    # AND a message on the high queue is taken at once too (its probe is out)
    send_bodies(sqs, high, ["h"])
    wait_until(lambda: starts(daemon, high), timeout=5)
    assert daemon.stop() == 0


def test_a_high_priority_burst_goes_first_while_the_low_queue_is_backlogged(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN four slots, a low queue backlogged with 0.5 s messages, and a high-priority queue
    (high, high_dlq), (low, low_dlq) = make_queues(), make_queues()
    config = write_queues_config(
        tmp_path,
        local_sqs,
        {
            "high": {"url": high, "dlq_url": high_dlq, "priority": 1, "handler": TAGGED},
            "low": {"url": low, "dlq_url": low_dlq, "handler": TAGGED},
        },
        workers={"processes": 1, "concurrency": 4},
    )
    send_bodies(sqs, low, ["sleep:0.5"] * 60)
    daemon = daemon_factory(config)
    daemon.wait_ready()
    wait_until(lambda: len(starts(daemon, low)) >= 8, timeout=20)
    # WHEN a burst of ten arrives on the high queue
    send_bodies(sqs, high, ["sleep:0.2"] * 10)
    wait_until(lambda: len(starts(daemon, high)) >= 10, timeout=20)
    # THEN each high message waited less than one low handler's run time plus 1 s
    waits = sorted(r["t"] - r["sent"] for r in starts(daemon, high))
    assert waits[-1] < 0.5 + 1.0 + 1.0, waits  # (+1 s: SentTimestamp is in ms, moto's clock)
    # AND no low message started while high ones were waiting to start
    first_high, last_high = (
        min(r["t"] for r in starts(daemon, high)),
        max(r["t"] for r in starts(daemon, high)),
    )
    low_between = [r for r in starts(daemon, low) if first_high + 0.3 < r["t"] < last_high]
    assert low_between == []
    daemon.kill()


def test_max_concurrency_caps_one_queue_per_process(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a queue capped at 2 in flight per process, beside an uncapped one, ten slots
    (capped, capped_dlq), (free, free_dlq) = make_queues(), make_queues()
    config = write_queues_config(
        tmp_path,
        local_sqs,
        {
            "capped": {"url": capped, "dlq_url": capped_dlq, "max_concurrency": 2, "handler": TAGGED},
            "free": {"url": free, "dlq_url": free_dlq, "handler": TAGGED},
        },
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    # WHEN both get 12 messages of 0.5 s
    send_bodies(sqs, capped, ["sleep:0.5"] * 12)
    send_bodies(sqs, free, ["sleep:0.5"] * 12)
    for url in (capped, free):
        wait_until(lambda u=url: queue_counts(sqs, u) == EMPTY, timeout=30)

    # THEN the capped queue never ran more than two at once; the other ran more
    def most_at_once(name: str) -> int:
        events = sorted(
            (r["t"], 1 if r["phase"] == "start" else -1) for r in daemon.handled() if r["queue"] == name
        )
        now = peak = 0
        for _, step in events:
            now += step
            peak = max(peak, now)
        return peak

    assert most_at_once(capped.rpartition("/")[2]) <= 2
    assert most_at_once(free.rpartition("/")[2]) > 2
    assert daemon.stop() == 0


def test_one_queues_outage_opens_that_queues_breaker_only(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN two queues with their own breakers
    (down, down_dlq), (up, up_dlq) = make_queues(), make_queues()
    breaker = {"breaker_min_messages": 4, "breaker_failure_ratio": 0.5, "breaker_cooldown": 30}
    config = write_queues_config(
        tmp_path,
        local_sqs,
        {
            "down": {"url": down, "dlq_url": down_dlq, "handler": TAGGED, "flow": breaker},
            "up": {"url": up, "dlq_url": up_dlq, "handler": TAGGED, "flow": breaker},
        },
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    # WHEN one queue's downstream is down
    send_bodies(sqs, down, ["down"] * 8)
    wait_until(lambda: daemon.scrape().get('sqs_poller_breaker_open{queue="down"}') == 1, timeout=30)
    # THEN the other queue goes on, its breaker closed
    send_bodies(sqs, up, [f"u{n}" for n in range(10)])
    wait_until(lambda: queue_counts(sqs, up) == EMPTY, timeout=20)
    metrics = daemon.scrape()
    assert metrics['sqs_poller_breaker_open{queue="up"}'] == 0
    assert metrics['sqs_poller_messages_total{outcome="deleted",queue="up"}'] == 10
    # AND nothing of the down queue was dead-lettered or deleted
    assert queue_counts(sqs, down_dlq) == EMPTY
    assert metrics.get('sqs_poller_messages_total{outcome="deleted",queue="down"}', 0) == 0
    assert daemon.healthz() == 200
    assert daemon.stop() == 0


def test_a_handler_that_cannot_load_stops_run_naming_its_queue(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    (a, a_dlq), (b, b_dlq) = make_queues(), make_queues()
    config = write_queues_config(
        tmp_path,
        local_sqs,
        {
            "good": {"url": a, "dlq_url": a_dlq, "handler": TAGGED},
            "broken": {"url": b, "dlq_url": b_dlq, "handler": {"target": "tests.no_such_module:handle"}},
        },
    )
    daemon = daemon_factory(config)
    assert daemon.proc.wait(timeout=30) == 3
    assert "queue broken" in daemon.text() and "no_such_module" in daemon.text()


def test_a_reload_adds_a_queue_and_removes_one_without_losing_a_message(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon serving one queue
    (a, a_dlq), (b, b_dlq) = make_queues(), make_queues()
    config = write_queues_config(
        tmp_path, local_sqs, {"first": {"url": a, "dlq_url": a_dlq, "handler": TAGGED}}
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, a, ["sleep:2"] * 3)
    wait_until(lambda: starts(daemon, a), timeout=10)
    # WHEN its config swaps the queue for another, and SIGHUP reloads it
    text = config.read_text().replace("queues.first", "queues.second")
    config.write_text(text.replace(a_dlq, b_dlq).replace(a, b))
    daemon.proc.send_signal(signal.SIGHUP)
    send_bodies(sqs, b, ["b1", "b2"])
    # THEN the new queue is served, and the removed one's held messages were finished or released
    wait_until(lambda: len(starts(daemon, b)) >= 2, timeout=30)
    wait_until(lambda: queue_counts(sqs, b) == EMPTY, timeout=20)
    ended = Counter(
        r["body"] for r in daemon.handled() if r["phase"] == "end" and r["queue"] == a.rpartition("/")[2]
    )
    left = sum(queue_counts(sqs, a).values())
    assert ended["sleep:2"] + left == 3
    assert daemon.stop() == 0


def test_weights_share_the_slots_among_busy_queues_of_one_priority(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN two backlogged queues of one priority, weights 3 and 1, and four slots
    (heavy, heavy_dlq), (light, light_dlq) = make_queues(), make_queues()
    config = write_queues_config(
        tmp_path,
        local_sqs,
        {
            "heavy": {"url": heavy, "dlq_url": heavy_dlq, "weight": 3, "batch_size": 1, "handler": TAGGED},
            "light": {"url": light, "dlq_url": light_dlq, "weight": 1, "batch_size": 1, "handler": TAGGED},
        },
        workers={"processes": 1, "concurrency": 4},
    )
    send_bodies(sqs, heavy, ["sleep:0.1"] * 60)
    send_bodies(sqs, light, ["sleep:0.1"] * 60)
    daemon = daemon_factory(config)
    daemon.wait_ready()
    # WHEN they have shared the slots for a while (both still have messages waiting)
    wait_until(lambda: len(starts(daemon)) >= 40, timeout=30)
    first = sorted(starts(daemon), key=lambda r: r["t"])[:40]
    daemon.kill()
    # THEN the heavy queue got about three messages started for each of the light one's
    got = Counter(r["queue"] for r in first)
    ratio = got[heavy.rpartition("/")[2]] / max(1, got[light.rpartition("/")[2]])
    assert 2.0 <= ratio <= 4.5, got
