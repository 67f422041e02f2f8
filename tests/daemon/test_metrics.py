"""The metrics endpoint's server and the histograms' bulk writes. `observe_all` (a batch's
observations, one write a bucket) must read exactly as observing each value does, at the bucket
bounds too; the server, which waits for connections with no timeout, must still stop."""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Histogram

from poller.daemon.metrics import AGE_BUCKETS, observe_all, serve_metrics, stop_serving
from poller.dev.localsqs import free_port


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_observe_all_reads_as_observing_each_value():
    amounts = [0.0, 0.01, 0.0100001, 0.3, 0.25, 2.5, 7, 3600, 3600.5, 1e9, 0.05, 0.05]
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    each = Histogram("age_seconds", "age", buckets=AGE_BUCKETS, registry=one_by_one)
    together = Histogram("age_seconds", "age", buckets=AGE_BUCKETS, registry=bulk)
    for amount in amounts:
        each.observe(amount)
    observe_all(together, amounts[:5])
    observe_all(together, amounts[5:])
    observe_all(together, [])
    assert samples(bulk) == samples(one_by_one)
    assert samples(bulk)[("age_seconds_bucket", (("le", "0.01"),))] == 2  # 0.0 and the bound itself


def test_the_metrics_server_answers_and_stops(tmp_path):
    # GIVEN the endpoint serving from its thread
    port = free_port()
    before = set(threading.enumerate())
    server = serve_metrics(("127.0.0.1", port), str(tmp_path), lambda: (True, "ok: 1 workers polling"))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200 and response.read() == b"ok: 1 workers polling\n"
    started = [t for t in set(threading.enumerate()) - before if t.name == "metrics"]
    assert len(started) == 1
    # WHEN it is stopped
    stop_serving(server)
    # THEN its thread has ended and the port refuses connections
    assert not started[0].is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_scrape_leaves_out_metrics_files_being_created_instead_of_failing(tmp_path):
    # GIVEN one worker's counter file, and two files other workers are creating right now: one
    # still empty, one whose header is not yet whole
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from poller.daemon.metrics import render_metrics

    written = MmapedDict(str(tmp_path / "counter_100.db"))
    key = mmap_key("sqs_poller_received", "sqs_poller_received_total", [], [], "Messages received")
    written.write_value(key, 7.0, 0.0)
    written.close()
    (tmp_path / "counter_101.db").write_bytes(b"")
    (tmp_path / "counter_102.db").write_bytes(b"\x08\x00")
    # WHEN /metrics is rendered THEN it answers, with what the readable file holds
    text = render_metrics(str(tmp_path)).decode()
    assert "sqs_poller_received_total 7.0" in text
