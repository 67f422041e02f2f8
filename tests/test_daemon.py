"""The daemon end to end: real processes against moto's SQS server on loopback."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest

from tests.conftest import queue_counts, queue_total, receive_all, send_bodies, wait_until, write_config


def test_each_message_is_handled_exactly_once_by_two_processes(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN 500 messages on a queue
    url, dlq = make_queues()
    send_bodies(sqs, url, [json.dumps({"n": n}) for n in range(500)])
    config = write_config(tmp_path, local_sqs, url, dlq, logging={"level": "info"})

    # WHEN the daemon runs with two processes and a no-op handler until the queue is empty
    daemon = daemon_factory(config)
    wait_until(lambda: len(daemon.handled()) >= 500 and queue_total(sqs, url) == 0, timeout=120)
    metrics = wait_until(
        lambda: (m := daemon.scrape()).get('sqs_poller_messages_total{outcome="deleted"}') == 500 and m,
        timeout=10,
    )

    # THEN every message was handled exactly once, by both processes, and deleted
    handled = daemon.handled()
    counts = Counter(r["body"] for r in handled)
    assert len(counts) == 500 and set(counts.values()) == {1}
    assert len({r["pid"] for r in handled}) == 2
    assert queue_total(sqs, url) == 0 and queue_total(sqs, dlq) == 0
    assert metrics["sqs_poller_received_total"] == 500
    assert daemon.stop() == 0
