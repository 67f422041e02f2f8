"""Flow control end to end: the real daemon (`python -m poller run`) on moto's SQS server, the
HTTP forwarder, and a local stand-in for the legacy system (examples.legacy_stub) that goes down
and comes back. Durations are scaled down from production ones (a 20 s outage, a 2 s cooldown),
each behaviour kept: ride out an outage with nothing dead-lettered, pause receiving while the
breaker is open, hold the host to max_per_second, still dead-letter real poison, stop cleanly
while paused."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from examples.legacy_stub import DROP, LegacyStub
from tests.conftest import Daemon, queue_total, receive_all, send_bodies, wait_until, write_config

pytestmark = pytest.mark.servers

RECEIVES = 'sqs_poller_sqs_requests_total{action="ReceiveMessage",outcome="ok"}'
OPEN_GAUGE = "sqs_poller_breaker_open"


def transitions(metrics: dict[str, float], to: str) -> float:
    return metrics.get(f'sqs_poller_breaker_transitions_total{{to="{to}"}}', 0.0)


def delivered(stub: LegacyStub) -> dict[int, int]:
    """Message number -> the receive count it was delivered with (201 answers only)."""
    return {r.json()["n"]: int(r.headers["X-Sqs-Poller-Receive-Count"]) for r in stub.answered(201)}


def forwarder_config(tmp_path: Path, local, url: str, dlq: str, stub: LegacyStub, **sections) -> Path:
    base = {
        "queue": {"max_receives": 3, "visibility_timeout": 30, "wait_time_seconds": 1},
        "retry": {"backoff_base": 0.5, "backoff_max": 2},
        "workers": {"processes": 2, "concurrency": 10, "shutdown_grace": 5},
        "handler": {
            "target": "poller.handlers.http:Forward",
            "timeout": 30,
            "options": {"url": f"{stub.url}/legacy", "timeout": 2},
        },
        "flow": {"breaker_min_messages": 10, "breaker_failure_ratio": 0.5, "breaker_cooldown": 2},
        "logging": {"level": "info", "format": "json"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return write_config(tmp_path, local, url, dlq, **base)


def numbered(count: int, poison: set[int] = frozenset()) -> list[str]:
    return [json.dumps({"n": n, **({"kind": "poison"} if n in poison else {})}) for n in range(count)]


class NotifySocket:
    """A systemd notify socket: collects what the daemon sends, with the time it arrived."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ntf", dir="/tmp")  # AF_UNIX paths are short
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.received.append((time.monotonic(), line))

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- 1 and 2: a 20 s outage in the middle of 300 messages ------------------------------------


@pytest.fixture(scope="module")
def outage(local_sqs, tmp_path_factory):
    """One run: 300 messages at 25/s; the stand-in goes down (503, then dropped connections)
    for 20 s once 90 were delivered, then comes back. Returns what was observed."""
    sqs = local_sqs.client()
    from poller.dev.localsqs import create_queue_pair

    url, dlq = create_queue_pair(sqs, f"flow-{uuid.uuid4().hex[:8]}", max_receive_count=10, visibility=30)
    tmp_path = tmp_path_factory.mktemp("outage")
    with LegacyStub() as stub:
        config = forwarder_config(tmp_path, local_sqs, url, dlq, stub, flow={"max_per_second": 25})
        send_bodies(sqs, url, numbered(300))
        daemon = Daemon(config, tmp_path).start()
        try:
            daemon.wait_ready()
            wait_until(lambda: len(stub.answered(201)) >= 90, timeout=30)
            down_at = time.monotonic()
            stub.go_down(503)
            wait_until(lambda: daemon.scrape().get(OPEN_GAUGE) == 1, timeout=15)
            opened_at = time.monotonic()
            time.sleep(1.5)  # a long poll begun before the breaker opened has returned by now
            first = daemon.scrape()
            health_while_open = daemon.healthz()
            time.sleep(max(0.0, down_at + 10 - time.monotonic()))
            stub.go_down(DROP)  # the rest of the outage: connections dropped without an answer
            time.sleep(max(0.0, down_at + 20 - time.monotonic()))
            last = daemon.scrape()
            stub.come_up()
            wait_until(lambda: len(delivered(stub)) == 300, timeout=90, interval=0.5)
            wait_until(lambda: queue_total(sqs, url) == 0, timeout=30, interval=0.5)
            after = daemon.scrape()
            code = daemon.stop()
        finally:
            daemon.kill()
        yield {
            "stub": stub,
            "daemon": daemon,
            "dlq": receive_all(sqs, dlq),
            "first": first,
            "last": last,
            "after": after,
            "health_while_open": health_while_open,
            "open_seconds": time.monotonic() - opened_at,
            "exit_code": code,
        }


def test_an_outage_is_ridden_out_with_every_message_delivered_and_none_dead_lettered(outage):
    # GIVEN 300 messages through the HTTP forwarder and a 20 s outage of the legacy system
    stub = outage["stub"]
    # THEN every message was delivered, none is in the DLQ (though max_receives is 3)
    counts = delivered(stub)
    assert sorted(counts) == list(range(300))
    assert outage["dlq"] == []
    assert outage["after"].get('sqs_poller_messages_total{outcome="dead_lettered"}', 0) == 0
    # AND no message was received more than 4 times
    assert max(counts.values()) <= 4, sorted(counts.values())[-10:]
    # AND the outage was seen: failed requests, a breaker that opened and closed again
    assert len(stub.answered(503)) + len(stub.answered(DROP)) >= 5  # half of the last 10
    after = outage["after"]
    assert transitions(after, "open") >= 1 and transitions(after, "closed") == 1
    assert after[OPEN_GAUGE] == 0
    assert outage["exit_code"] == 0


def test_while_open_only_the_probe_receives_and_the_daemon_stays_healthy(outage):
    # GIVEN the breaker open during the outage
    first, last = outage["first"], outage["last"]
    assert first[OPEN_GAUGE] == 1
    # THEN over the ~18 s it stayed open, ReceiveMessage calls were only the probes (one message
    # each, one at a time host-wide): two workers polling would have made dozens
    receives = last[RECEIVES] - first[RECEIVES]
    probes = transitions(last, "probing") - transitions(first, "probing")
    assert 1 <= probes <= 4
    assert receives <= probes + 1, (receives, probes)
    # AND paused is healthy
    assert outage["health_while_open"] == 200
    # AND each transition was logged once, not once per message
    logs = outage["daemon"].logs()
    opened = [r for r in logs if r.get("event") == "breaker_opened"]
    closed = [r for r in logs if r.get("event") == "breaker_closed"]
    assert len(opened) == transitions(outage["after"], "open")
    assert len(closed) == 1 and closed[0]["paused_seconds"] >= 18
    assert len(opened) < 10


# --- 3: the host-wide rate limit --------------------------------------------------------------


def test_max_per_second_holds_for_the_whole_host(local_sqs, sqs, make_queues, tmp_path):
    # GIVEN max_per_second = 20 with 2 processes of concurrency 10, and a backlog of 340
    url, dlq = make_queues()
    with LegacyStub() as stub:
        config = forwarder_config(tmp_path, local_sqs, url, dlq, stub, flow={"max_per_second": 20})
        send_bodies(sqs, url, numbered(340))
        daemon = Daemon(config, tmp_path).start()
        try:
            daemon.wait_ready()
            # WHEN the daemon works through it (watching how many messages the host holds)
            held = []
            deadline = time.monotonic() + 60
            while len(stub.requests) < 330 and time.monotonic() < deadline:
                held.append(daemon.scrape()["sqs_poller_in_flight"])
                time.sleep(0.2)
            daemon.stop()
        finally:
            daemon.kill()
        arrivals = sorted(r.at for r in stub.requests)
    # THEN the stand-in saw 20 requests a second, within 10 %, over a 12 s window
    start = arrivals[0] + 2  # past the start-up
    window = [t for t in arrivals if start <= t < start + 12]
    assert 20 * 0.9 <= len(window) / 12 <= 20 * 1.1, len(window) / 12
    # AND without over-receiving: the host held about half a second of starts (10), not all of
    # its 20 slots as it would with the backlog and no limit
    assert statistics.median(held) <= 12, sorted(held)
    # AND smoothly: no half second held more than a half second's share, give or take two
    for n in range(24):
        half = [t for t in window if start + n / 2 <= t < start + (n + 1) / 2]
        assert len(half) <= 12, (n, len(half))


# --- 4: poison during an outage ---------------------------------------------------------------


def test_a_poison_message_received_during_an_outage_is_dead_lettered_once_it_closes(
    local_sqs, sqs, make_queues, tmp_path
):
    # GIVEN the legacy system is down, and one of 40 messages is one it will always refuse (500)
    url, dlq = make_queues(max_receive_count=20)
    with LegacyStub() as stub:
        stub.go_down(503)
        stub.reject_bodies('"kind": "poison"', 500)
        config = forwarder_config(tmp_path, local_sqs, url, dlq, stub)
        send_bodies(sqs, url, numbered(40, poison={7}))
        daemon = Daemon(config, tmp_path).start()
        try:
            daemon.wait_ready()
            wait_until(lambda: daemon.scrape().get(OPEN_GAUGE) == 1, timeout=20)
            time.sleep(4)
            # WHEN it comes back
            stub.come_up()
            wait_until(lambda: len(delivered(stub)) == 39, timeout=60, interval=0.5)
            wait_until(lambda: queue_total(sqs, url) == 0, timeout=30, interval=0.5)
            assert daemon.stop() == 0
        finally:
            daemon.kill()
    # THEN the poison message is in the DLQ, with why; the outage dead-lettered nothing else
    [dead] = receive_all(sqs, dlq)
    assert json.loads(dead["Body"])["n"] == 7
    failure = json.loads(dead["MessageAttributes"]["poller.failure"]["StringValue"])
    assert failure["type"] == "ForwardError" and "HTTP 500" in failure["error"]


# --- 5: SIGTERM while paused --------------------------------------------------------------------


def test_sigterm_while_open_exits_cleanly_within_the_grace_and_loses_nothing(
    local_sqs, sqs, make_queues, tmp_path
):
    # GIVEN the legacy system is down and the breaker has opened (under systemd's watchdog)
    url, dlq = make_queues()
    notify = NotifySocket()
    with LegacyStub() as stub:
        stub.go_down(DROP)
        config = forwarder_config(tmp_path, local_sqs, url, dlq, stub, flow={"breaker_cooldown": 30})
        send_bodies(sqs, url, numbered(30))
        env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"}
        daemon = Daemon(config, tmp_path, env).start()
        try:
            daemon.wait_ready()
            wait_until(lambda: daemon.scrape().get(OPEN_GAUGE) == 1, timeout=20)
            paused_at = time.monotonic()
            time.sleep(4)
            health = daemon.healthz()
            # WHEN SIGTERM arrives while paused
            started = time.monotonic()
            code = daemon.stop(timeout=30)
            took = time.monotonic() - started
        finally:
            daemon.kill()
            notify.close()
    # THEN it exits 0 within the grace (5 s) plus one poll
    assert code == 0, daemon.text()[-3000:]
    assert took < 5 + 1 + 2
    # AND nothing is lost: all 30 still on the queue, none delivered, none dead-lettered
    assert queue_total(sqs, url) == 30
    assert stub.answered(201) == [] and receive_all(sqs, dlq) == []
    # AND while paused it was healthy: /healthz 200, STATUS=paused, the watchdog fed every second
    assert health == 200
    lines = [line for at, line in notify.received]
    assert any(line.startswith("STATUS=paused: circuit breaker open") for line in lines), lines
    pings = [at for at, line in notify.received if line == "WATCHDOG=1" and paused_at <= at <= started]
    assert len(pings) >= 3, lines
