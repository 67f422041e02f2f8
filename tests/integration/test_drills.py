"""Fault drills: the real daemon under load, while things go wrong. Each prints
sent / handled / in DLQ / lost / duplicated, and asserts nothing is lost.

The fast drills run in `make test`; the long ones (`@pytest.mark.drill`) in `make drill`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from poller.dev.localsqs import LocalSqs, free_port
from tests.conftest import queue_total, receive_all, send_bodies, wait_until, write_config

HANDLER = "tests.drill_handlers:scripted"


@dataclass
class Tally:
    sent: int
    handled: int
    in_dlq: int
    lost: int
    duplicated: int
    seconds: float = 0.0

    def line(self, name: str) -> str:
        return (
            f"drill {name}: sent={self.sent} handled={self.handled} in_dlq={self.in_dlq} "
            f"lost={self.lost} duplicated={self.duplicated} ({self.seconds:.1f}s)"
        )


def bodies(count: int, sleep: float = 0.0, poison: set[int] | frozenset[int] = frozenset()) -> list[str]:
    return [json.dumps({"n": n, "sleep": sleep, "poison": n in poison}) for n in range(count)]


def tally(sent: int, records: list[dict[str, Any]], dlq_messages: list[dict[str, Any]]) -> Tally:
    """Handled = finished without error; duplicated = finished more than once; lost = neither
    finished nor in the DLQ (only meaningful once the source queue is empty)."""
    finished = Counter(json.loads(r["body"])["n"] for r in records if r.get("phase") == "end")
    in_dlq = {json.loads(m["Body"])["n"] for m in dlq_messages}
    lost = set(range(sent)) - set(finished) - in_dlq
    duplicated = sum(1 for count in finished.values() if count > 1)
    return Tally(sent, len(finished), len(in_dlq), len(lost), duplicated)


def report(capsys: pytest.CaptureFixture[str], name: str, result: Tally) -> None:
    with capsys.disabled():
        print("\n" + result.line(name))


class ShallowSender(threading.Thread):
    """Sends `bodies` while keeping at most `depth` visible: moto's receive slows by about a
    millisecond per queued message, and a deep queue would drill moto, not the daemon."""

    def __init__(self, sqs: Any, url: str, bodies: list[str], depth: int = 40):
        super().__init__(daemon=True)
        self.sqs, self.url, self.bodies, self.depth = sqs, url, bodies, depth
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.sent < len(self.bodies):
                visible = int(
                    self.sqs.get_queue_attributes(
                        QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
                    )["Attributes"]["ApproximateNumberOfMessages"]
                )
                room = min(self.depth - visible, len(self.bodies) - self.sent)
                if room < 10 and self.sent + room < len(self.bodies):
                    time.sleep(0.05)
                    continue
                send_bodies(self.sqs, self.url, self.bodies[self.sent : self.sent + room])
                self.sent += room
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 300) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"sent only {self.sent} of {len(self.bodies)}"
        assert self.error is None, self.error


def send_shallow(sqs: Any, url: str, bodies: list[str], depth: int = 40) -> ShallowSender:
    sender = ShallowSender(sqs, url, bodies, depth)
    sender.start()
    return sender


def drain(sqs: Any, url: str, timeout: float = 120) -> None:
    wait_until(lambda: queue_total(sqs, url) == 0, timeout=timeout, interval=0.5)


def drill_config(tmp_path, local, url, dlq, visibility: int = 5, **sections: dict) -> Any:
    return write_config(
        tmp_path,
        local,
        url,
        dlq,
        queue={"visibility_timeout": visibility, "max_receives": 5},
        handler={"target": HANDLER, "timeout": 60},
        logging={"level": "info"},
        **sections,
    )


# --- fast drills (make test) --------------------------------------------------------------------


def test_sigkill_of_a_random_worker_every_few_seconds_loses_nothing(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    # GIVEN a daemon with three worker processes and 1000 messages arriving
    url, dlq = make_queues(visibility=5)
    daemon = daemon_factory(drill_config(tmp_path, local_sqs, url, dlq, workers={"processes": 3}))
    daemon.wait_ready()
    started = time.monotonic()
    sender = send_shallow(sqs, url, bodies(1000, sleep=0.05))

    # WHEN a random worker is SIGKILLed every 2 s while they are handled
    kills = 0
    rng = random.Random(7)
    while (sender.is_alive() or queue_total(sqs, url)) and kills < 5:
        time.sleep(2)
        pids = daemon.worker_pids()
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
    sender.finish()
    drain(sqs, url)

    # THEN every message finished; the killed workers' messages came back and ran again. A
    # message a worker held at two of the kills is dead-lettered as a crash suspect, as the
    # crash policy says (README: "crashed its worker ... twice"), with the crash named. The
    # drill's kills are random, so that is rare but allowed; nothing else may go there
    moved = receive_all(sqs, dlq)
    result = tally(1000, daemon.handled(), moved)
    result.seconds = time.monotonic() - started
    report(capsys, f"SIGKILL of a worker every 2 s (x{kills})", result)
    assert kills >= 2
    assert result.lost == 0 and result.handled + result.in_dlq >= 1000
    for message in moved:
        failure = json.loads(message["MessageAttributes"]["poller.failure"]["StringValue"])
        assert "crashed its worker" in failure["error"] and "SIGKILL" in failure["error"], failure
    assert result.in_dlq <= 2
    assert daemon.stop() == 0


def test_sigterm_and_restart_mid_load_loses_nothing(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    # GIVEN 800 messages arriving, a daemon handling them (120 s visibility timeout)
    url, dlq = make_queues(visibility=120)
    config = drill_config(tmp_path, local_sqs, url, dlq, visibility=120)
    first = daemon_factory(config)
    started = time.monotonic()
    sender = send_shallow(sqs, url, bodies(800, sleep=0.05))
    wait_until(lambda: len(first.handled()) >= 300, timeout=60)

    # WHEN it is stopped with SIGTERM mid-load and started again
    assert first.stop() == 0
    restarted = time.time()
    second = daemon_factory(config)
    sender.finish()
    drain(sqs, url)

    # THEN nothing is lost, nothing ran twice, and none waited out the visibility timeout:
    # what the first daemon received but had not started, it released, so the second one ran
    # it within a minute of starting (a message left to its timeout would reappear after 120 s)
    result = tally(800, first.handled() + second.handled(), receive_all(sqs, dlq))
    result.seconds = time.monotonic() - started
    report(capsys, "SIGTERM and restart mid-load", result)
    assert result.lost == 0 and result.in_dlq == 0 and result.handled == 800
    assert result.duplicated == 0
    released = [r["t"] - restarted for r in second.handled() if r["receive_count"] > 1]
    assert all(after < 60 for after in released), max(released)
    assert second.stop() == 0


def run_traffic(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, count: int, poison: set[int]
) -> tuple[Tally, float]:
    """One daemon through `count` messages (50 ms each); returns the tally and messages/s."""
    url, dlq = make_queues(visibility=30)
    daemon = daemon_factory(drill_config(tmp_path, local_sqs, url, dlq, visibility=30))
    daemon.wait_ready()
    sender = send_shallow(sqs, url, bodies(count, sleep=0.05, poison=poison))
    sender.finish()
    drain(sqs, url)
    records = daemon.handled()
    times = [r["t"] for r in records]
    result = tally(count, records, receive_all(sqs, dlq))
    result.seconds = max(times) - min(times)
    assert daemon.stop() == 0
    return result, count / result.seconds


def poison_drill(local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys, count: int) -> float:
    """A clean run and a run with 1 % poison, same traffic; returns poison / clean throughput."""
    # GIVEN the same messages twice: clean, then with 1 % poison mixed in
    clean, clean_rate = run_traffic(local_sqs, sqs, make_queues, tmp_path, daemon_factory, count, set())
    poison = set(random.Random(1).sample(range(count), count // 100))

    # WHEN the daemon runs through both
    result, poison_rate = run_traffic(local_sqs, sqs, make_queues, tmp_path, daemon_factory, count, poison)

    # THEN all poison is in the DLQ and the rest handled
    report(capsys, f"clean run ({clean_rate:.0f} msg/s)", clean)
    report(capsys, f"1 % poison ({poison_rate:.0f} msg/s, {poison_rate / clean_rate:.0%} of clean)", result)
    assert clean.lost == 0 and clean.handled == count
    assert result.lost == 0 and result.in_dlq == len(poison) and result.handled == count - len(poison)
    return poison_rate / clean_rate


def test_one_percent_poison_goes_to_the_dlq_without_slowing_the_rest(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    ratio = poison_drill(local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys, 600)
    # A few-second run on a shared machine is noisy (0.68 seen with the other core busy): this
    # catches head-of-line blocking, which would be far worse; the long drill below holds the
    # issue's 10 % bar.
    assert ratio >= 0.5


def test_handlers_slower_than_the_visibility_timeout_run_once(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    # GIVEN a 3 s visibility timeout and 30 handlers that take 7 s each
    url, dlq = make_queues(visibility=3)
    send_bodies(sqs, url, bodies(30, sleep=7))
    daemon = daemon_factory(drill_config(tmp_path, local_sqs, url, dlq, visibility=3))
    started = time.monotonic()

    # WHEN they run
    drain(sqs, url, timeout=90)

    # THEN the heartbeat kept them hidden: each ran exactly once, none lost
    records = daemon.handled()
    result = tally(30, records, receive_all(sqs, dlq))
    result.seconds = time.monotonic() - started
    report(capsys, "handlers 7 s, visibility timeout 3 s", result)
    assert result.lost == 0 and result.handled == 30 and result.duplicated == 0
    assert sum(1 for r in records if r["phase"] == "start") == 30
    assert daemon.stop() == 0


def sqs_outage(local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys, seconds: float) -> None:
    # GIVEN a daemon talking to its own endpoint (same moto backends, its own port), under load
    port = free_port()
    endpoint = LocalSqs(port).__enter__()
    url, dlq = make_queues(visibility=10)
    daemon = daemon_factory(drill_config(tmp_path, endpoint, url, dlq, visibility=10))
    daemon.wait_ready()
    started = time.monotonic()
    sender = send_shallow(sqs, url, bodies(800, sleep=0.05))
    wait_until(lambda: len(daemon.handled()) >= 200, timeout=60)

    # WHEN the endpoint is stopped for a while and started again on the same port
    endpoint.stop()
    time.sleep(seconds)
    endpoint = LocalSqs(port).__enter__()
    try:
        sender.finish()
        drain(sqs, url, timeout=180)

        # THEN the daemon rode it out: backed off, came back, lost nothing
        result = tally(800, daemon.handled(), receive_all(sqs, dlq))
        result.seconds = time.monotonic() - started
        report(capsys, f"SQS endpoint down {seconds:.0f} s", result)
        assert result.lost == 0 and result.in_dlq == 0 and result.handled == 800
        assert not daemon.exited()
        assert daemon.stop() == 0
    finally:
        endpoint.stop()


def test_sqs_endpoint_down_for_5s_loses_nothing(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    sqs_outage(local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys, 5)


# --- long drills (make drill) --------------------------------------------------------------------


@pytest.mark.drill
def test_one_percent_poison_costs_under_ten_percent_throughput(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    ratio = poison_drill(local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys, 2000)
    assert ratio >= 0.9


@pytest.mark.drill
def test_sqs_endpoint_down_for_30s_loses_nothing(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    sqs_outage(local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys, 30)


@pytest.mark.drill
@pytest.mark.timeout(1200)
def test_a_burst_of_5000_messages_loses_nothing(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    # GIVEN a running daemon
    url, dlq = make_queues(visibility=30)
    daemon = daemon_factory(drill_config(tmp_path, local_sqs, url, dlq, visibility=30))
    daemon.wait_ready()
    started = time.monotonic()

    # WHEN 5000 messages arrive as fast as SQS takes them (moto slows as its queue deepens,
    # so this takes minutes: one sender, no pacing)
    sender = threading.Thread(target=send_bodies, args=(local_sqs.client(), url, bodies(5000)), daemon=True)
    sender.start()
    sender.join(timeout=900)
    assert not sender.is_alive()
    sent = time.monotonic() - started
    drain(sqs, url, timeout=900)

    # THEN every one was handled, once
    result = tally(5000, daemon.handled(), receive_all(sqs, dlq))
    result.seconds = time.monotonic() - started
    report(capsys, f"burst of 5000 (all sent after {sent:.0f} s)", result)
    assert result.lost == 0 and result.handled == 5000 and result.duplicated == 0
    assert daemon.stop() == 0


# --- hostile handlers and endpoints (issue 10; make drill) -----------------------------------------


def hostile_tally(sent: int, records: list[dict[str, Any]], dlq_messages: list[dict[str, Any]]) -> Tally:
    """tally() for tests.hostile_handlers records, which carry "n" instead of the body."""
    finished = Counter(r["n"] for r in records if r.get("phase") == "end")
    in_dlq = {json.loads(m["Body"])["n"] for m in dlq_messages}
    lost = set(range(sent)) - set(finished) - in_dlq
    return Tally(sent, len(finished), len(in_dlq), len(lost), sum(1 for c in finished.values() if c > 1))


@pytest.mark.drill
def test_200_messages_and_3_killers_dead_letter_only_the_killers(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    # GIVEN 200 ordinary messages (0.2 s each) and 3 that SIGKILL their worker, mixed in;
    # two workers of ten, max_receives 2, the queue's redrive backstop at 3 receives
    url, dlq = make_queues(visibility=5, max_receive_count=3)
    killers = {20, 100, 180}
    messages = [
        json.dumps({"n": n, "sleep": 0.05, "kill": True} if n in killers else {"n": n, "sleep": 0.2})
        for n in range(203)
    ]
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        queue={"visibility_timeout": 5, "max_receives": 2},
        retry={"backoff_base": 0.5, "backoff_max": 2},
        handler={"target": "tests.hostile_handlers:scripted", "timeout": 60},
        logging={"level": "info"},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    started = time.monotonic()

    # WHEN they arrive and the daemon works through them
    sender = send_shallow(sqs, url, messages)
    sender.finish()
    drain(sqs, url, timeout=240)

    # THEN the killers, and only they, are in the DLQ, each with a reason saying it crashed its
    # worker; each ran at most max_receives times; every other message was handled
    moved = receive_all(sqs, dlq)
    result = hostile_tally(203, daemon.handled(), moved)
    result.seconds = time.monotonic() - started
    in_dlq = {json.loads(m["Body"])["n"] for m in moved}
    innocent = len(in_dlq - killers)
    killer_runs = Counter(r["n"] for r in daemon.handled() if r.get("phase") == "start" and r["n"] in killers)
    backoffs = [r.get("restart_in", 0) for r in daemon.logs() if r.get("event") == "worker_died"]
    report(
        capsys,
        f"200 normal + 3 killers (innocent dead-lettered={innocent}, killer runs={dict(killer_runs)}, "
        f"worker deaths={len(backoffs)}, longest restart backoff={max(backoffs, default=0)}s)",
        result,
    )
    assert result.lost == 0
    assert innocent == 0 and result.handled == 200
    assert in_dlq == killers
    failures = [json.loads(m["MessageAttributes"]["poller.failure"]["StringValue"]) for m in moved if
                "poller.failure" in m.get("MessageAttributes", {})]  # fmt: skip
    assert len(failures) == 3 and all("crash" in f["error"].lower() for f in failures), failures
    assert max(killer_runs.values()) <= 2, killer_runs
    assert max(backoffs, default=0) <= 5, backoffs
    assert daemon.stop() == 0


def worker_rss_mb(pids: list[int]) -> list[float]:
    sizes = []
    for pid in pids:
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


@pytest.mark.drill
def test_a_leaking_handler_is_bounded_by_max_memory_mb(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    # GIVEN a handler that leaks 3 MB a message, and workers limited to 200 MB
    url, dlq = make_queues(visibility=30)
    limit, leak, concurrency, count = 200, 3, 4, 300
    config = write_config(
        tmp_path,
        local_sqs,
        url,
        dlq,
        handler={"target": "tests.hostile_handlers:scripted", "timeout": 60},
        workers={"processes": 2, "concurrency": concurrency, "max_memory_mb": limit},
        logging={"level": "info"},
    )
    daemon = daemon_factory(config)
    daemon.wait_ready()
    started = time.monotonic()

    # WHEN 300 messages go through, while the workers' RSS is sampled
    sender = send_shallow(
        sqs, url, [json.dumps({"n": n, "leak_mb": leak, "sleep": 0.02}) for n in range(count)]
    )
    peak = 0.0
    while sender.is_alive() or queue_total(sqs, url):
        peak = max([peak, *worker_rss_mb(daemon.worker_pids())])
        assert not daemon.exited(), daemon.text()[-2000:]
        assert time.monotonic() - started < 300, "not drained within 300 s"
        time.sleep(0.25)
    sender.finish()

    # THEN no worker grew past the limit plus what it held when it passed it; nothing was lost,
    # repeated or dead-lettered; the workers were replaced, not crashed
    result = hostile_tally(count, daemon.handled(), receive_all(sqs, dlq))
    result.seconds = time.monotonic() - started
    workers = len({r["pid"] for r in daemon.handled()})
    report(
        capsys,
        f"leak {leak} MB/message, max_memory_mb {limit} (peak RSS {peak:.0f} MB, {workers} workers)",
        result,
    )
    assert result.lost == 0 and result.handled == count and result.duplicated == 0 and result.in_dlq == 0
    assert peak <= limit + concurrency * leak + 30, peak
    assert workers > 2
    assert not [r for r in daemon.logs() if r.get("event") == "worker_died"]
    assert daemon.stop() == 0


@pytest.mark.drill
def test_an_endpoint_that_never_answers_keeps_the_daemon_live_and_stoppable(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory, capsys
):
    from tests.faultproxy import FaultProxy

    # GIVEN a ready daemon with 20 s long polls, behind a proxy
    url, dlq = make_queues()
    with FaultProxy(local_sqs.endpoint_url) as proxy:
        config = write_config(
            tmp_path, proxy, url, dlq, queue={"wait_time_seconds": 20}, logging={"level": "info"}
        )
        daemon = daemon_factory(config)
        daemon.wait_ready()

        # WHEN the endpoint accepts receives and never answers them, for 75 s
        proxy.tarpit("ReceiveMessage")
        started = time.monotonic()
        unhealthy = []
        while time.monotonic() - started < 75:
            if daemon.healthz() != 200:
                unhealthy.append(round(time.monotonic() - started))
            time.sleep(1)
        metrics = daemon.scrape()
        calls = sum(
            v
            for k, v in metrics.items()
            if k.startswith('sqs_poller_sqs_requests_total{action="ReceiveMessage"') and "queue=" in k
        )
        requests = proxy.count("ReceiveMessage")
        stop_started = time.monotonic()
        code = daemon.stop(timeout=60)
        stop_took = time.monotonic() - stop_started

    # THEN the loop stayed live (/healthz 200), each receive was one request, and SIGTERM
    # stopped it cleanly within seconds
    with capsys.disabled():
        print(
            f"\ndrill tarpit 75 s: receive requests={requests} receive calls counted={calls:.0f} "
            f"healthz non-200 for {len(unhealthy)} s (from {unhealthy[:1]} s) "
            f"sigterm exit={code} in {stop_took:.1f}s"
        )
    assert not unhealthy, unhealthy
    assert abs(requests - calls) <= 2, (requests, calls)  # a request or two may be in flight at the scrape
    assert code == 0 and stop_took < 5
