"""Flow control's decisions on a fake clock: the breaker's states, the probe, the rate limit's
schedule and receive gate (poller.pipeline.flow). The daemon end to end is in test_flow.py."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from poller.config import FlowConfig
from poller.configload import build_config
from poller.daemon.settle import decide
from poller.dev.memsqs import MemorySqs
from poller.message import Released, Skip, Unavailable
from poller.ops.check import redrive_row
from poller.pipeline.flow import BreakerOpen, FlowState, FlowStep, probe_result
from tests.configs import BASE
from tests.daemon.test_worker_seams import make_worker
from tests.messages import message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def flow(**keys) -> FlowState:
    return FlowState(FlowConfig(**{"breaker_min_messages": 10, "breaker_cooldown": 5.0, **keys}))


def step(state: FlowState, clock: Clock) -> tuple[FlowStep, list]:
    seen: list = []
    return FlowStep(state, seen.append, clock=clock, sleep=clock.sleep), seen


def fail(state: FlowState, clock: Clock, n: int, retry_after: float | None = None) -> list:
    return [t for t in (state.record(True, retry_after, clock()) for _ in range(n)) if t]


def open_breaker(state: FlowState, clock: Clock) -> None:
    assert fail(state, clock, len(state.ring))


def test_opens_at_the_ratio_only_once_the_window_holds_min_messages():
    clock, state = Clock(), flow(breaker_failure_ratio=0.5)
    # GIVEN 9 failures: below breaker_min_messages = 10 outcomes
    assert fail(state, clock, 9) == [] and state.closed
    # WHEN the 10th outcome is a failure too THEN the breaker opens, once
    [opened] = fail(state, clock, 1)
    assert (opened.to, opened.failures, opened.window, opened.cooldown) == ("open", 10, 10, 5.0)
    assert not state.closed
    assert fail(state, clock, 5) == []  # stragglers while open are no new transition


def test_successes_keep_it_closed_below_the_ratio():
    clock, state = Clock(), flow(breaker_failure_ratio=0.5)
    # GIVEN alternating outcomes: 4 of every 10 fail (just under half)
    for n in range(100):
        assert state.record(n % 5 in (0, 1), None, clock()) is None
    # THEN it never opened
    assert state.closed
    # WHEN failures follow THEN it opens as soon as the last ten hold five (the third one)
    assert [state.record(True, None, clock()) is None for _ in range(3)] == [True, True, False]
    assert not state.closed


def test_paused_workers_receive_nothing_until_exactly_one_probe_after_the_cooldown():
    clock, state = Clock(), flow()
    open_breaker(state, clock)
    # WHILE open THEN no worker may receive
    assert state.admit(10, clock()) == (0, False)
    clock.sleep(4.9)
    assert state.admit(10, clock()) == (0, False)
    # WHEN the cooldown is over THEN the first worker to ask gets one probe, the others nothing
    clock.sleep(0.2)
    assert state.admit(10, clock()) == (1, True)
    assert state.admit(10, clock()) == (0, False)
    assert state.admit(7, clock() + 60) == (0, False)


def test_a_successful_probe_closes_and_resets_the_window():
    clock, state = Clock(), flow()
    open_breaker(state, clock)
    clock.sleep(5)
    state.admit(10, clock())
    # WHEN the probe's message succeeds
    closed = state.finish_probe("ok", None, clock())
    # THEN closed, paused for the cooldown, receives go on, and the old failures are forgotten
    assert (closed.to, closed.paused) == ("closed", 5)
    assert state.admit(10, clock()) == (10, False)
    assert fail(state, clock, 9) == [] and state.closed


def test_a_failed_probe_reopens_with_a_growing_capped_cooldown():
    clock, state = Clock(), flow(breaker_cooldown=5.0)
    open_breaker(state, clock)
    cooldowns = []
    for _ in range(6):
        clock.sleep(state.values[1] - clock())  # until the probe is due
        assert state.admit(10, clock()) == (1, True)
        cooldowns.append(state.finish_probe("unavailable", None, clock()).cooldown)
    # THEN the cooldown doubles up to 8 times the configured one
    assert cooldowns == [10, 20, 40, 40, 40, 40]
    # AND after a success it starts from the configured cooldown again
    clock.sleep(40)
    state.admit(1, clock())
    state.finish_probe("ok", None, clock())
    assert fail(state, clock, 10)[0].cooldown == 5


def test_retry_after_is_the_cooldown_when_larger():
    clock, state = Clock(), flow(breaker_cooldown=5.0)
    # GIVEN the downstream said "come back in 60 s" WHEN that failure opens the breaker
    fail(state, clock, 9)
    [opened] = fail(state, clock, 1, retry_after=60)
    # THEN no probe before 60 s
    assert opened.cooldown == 60
    clock.sleep(59)
    assert state.admit(10, clock()) == (0, False)
    clock.sleep(1)
    assert state.admit(10, clock()) == (1, True)
    # AND a failed probe's Retry-After counts too
    assert state.finish_probe("unavailable", 300, clock()).cooldown == 300


def test_a_probe_that_found_no_message_or_never_reported_passes_to_another_worker():
    clock, state = Clock(), FlowState(FlowConfig(breaker_min_messages=1), probe_timeout=90)
    open_breaker(state, clock)
    clock.sleep(30)
    first, seen = step(state, clock)
    assert first.admit(10) == (1, 0.0)
    assert [t.to for t in seen] == ["probing"]
    # WHEN its receive came back empty THEN another worker may probe at once
    first.received([])
    assert state.admit(10, clock()) == (1, True)
    # AND a probe never reported (its worker died) is handed on after the probe timeout
    assert state.admit(10, clock() + 89) == (0, False)
    assert state.admit(10, clock() + 91) == (1, True)


def test_a_probe_released_unstarted_by_a_pause_passes_to_another_worker_at_once():
    # GIVEN a worker that took the probe and received its message
    clock, state = Clock(), FlowState(FlowConfig(breaker_min_messages=1), probe_timeout=600)
    open_breaker(state, clock)
    clock.sleep(30)
    first, _ = step(state, clock)
    assert first.admit(10) == (1, 0.0)
    first.received([{"ReceiptHandle": "probe-handle"}])
    assert state.admit(10, clock()) == (0, False)
    # WHEN other messages go back unstarted THEN the probe is still its own
    first.released(["other-handle"])
    assert state.admit(10, clock()) == (0, False)
    # WHEN the probe's message goes back unstarted (an operator paused the queue) THEN another
    # worker may probe at once, not after the probe's 600 s timeout
    first.released(["probe-handle", "other-handle"])
    assert state.admit(10, clock()) == (1, True)


def test_the_step_runs_the_probe_and_sends_back_held_messages_with_the_time_left():
    clock, state = Clock(), flow()
    worker, seen = step(state, clock)
    for n in range(10):
        worker.after(message("x", receipt_handle=f"h{n}"), Unavailable("HTTP 503"))
    assert [t.to for t in seen] == ["open"]
    # GIVEN a message received but not started when the breaker opened
    clock.sleep(2)
    with pytest.raises(BreakerOpen) as info:
        worker.before(message("held", receipt_handle="held"))
    # THEN it goes back, visible again at the probe, never dead-lettered (whatever its count)
    assert info.value.retry_after == 3
    old = message("held", receive_count=99)
    decision = decide(old, info.value, config_with(flow={"breaker_cooldown": 5}))
    assert (decision.action, decision.delay) == ("retry", 5)
    # AND its outcome is not an answer from the downstream
    worker.after(message("held", receipt_handle="held"), info.value)
    # WHEN the cooldown is over THEN this worker takes the probe, runs it, and it closes
    clock.sleep(3)
    assert worker.admit(10) == (1, 0.0)
    worker.received([{"ReceiptHandle": "probe-handle"}])
    probe = message("p", receipt_handle="probe-handle")
    assert worker.before(probe) is probe
    worker.after(probe, None)
    assert [t.to for t in seen] == ["open", "probing", "closed"]
    assert state.closed


def test_probe_results():
    assert probe_result(None) == "ok"
    assert probe_result(ValueError("500")) == "ok"  # the downstream answered: the message's fault
    assert probe_result(Unavailable("refused")) == "unavailable"
    for error in (BreakerOpen("x"), Skip("filtered"), Released("g")):
        assert probe_result(error) == "inconclusive"


def test_the_rate_limit_spaces_starts_evenly_and_saves_no_burst_while_idle():
    clock, state = Clock(), flow(max_per_second=20)
    worker, _ = step(state, clock)
    # WHEN 40 messages start back to back
    starts = []
    for n in range(40):
        worker.before(message("x", receipt_handle=f"h{n}"))
        starts.append(clock())
    # THEN one every 50 ms: 20 a second, no burst
    gaps = [round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == [0.05] * 39
    # AND after ten idle seconds the next two starts are still 50 ms apart
    clock.sleep(10)
    first = state.take_start(clock())
    assert state.take_start(clock()) - first == pytest.approx(0.05)


def test_the_receive_gate_admits_only_what_the_schedule_starts_within_its_horizon():
    clock, state = Clock(), flow(max_per_second=20)
    # GIVEN an idle host THEN a worker may receive up to half a second of starts (10)
    assert state.admit(10, clock()) == (10, False)
    assert state.admit(4, clock()) == (4, False)
    # WHEN 10 starts are booked (half a second) THEN the next worker waits
    for _ in range(10):
        state.take_start(clock())
    assert state.admit(10, clock()) == (0, False)
    assert 0 < state.wait_hint(clock()) <= 0.5
    # AND once 100 ms passed, two would fit: it still waits for room for five (half the horizon),
    # so receives come five at a time, not one per freed start
    clock.sleep(0.1)
    assert state.admit(10, clock()) == (0, False)
    assert state.wait_hint(clock()) == pytest.approx(0.15)
    clock.sleep(0.15)
    assert state.admit(10, clock()) == (5, False)
    # AND a worker with fewer free slots needs room for only those
    assert state.admit(2, clock()) == (2, False)


def test_a_slow_rate_still_admits_one_message():
    clock, state = Clock(), flow(max_per_second=0.1)
    assert state.admit(10, clock()) == (1, False)
    state.take_start(clock())
    assert state.admit(10, clock()) == (0, False)  # the next start is ten seconds away
    clock.sleep(0.5)
    assert state.admit(10, clock()) == (1, False)


def config_with(**sections):
    return build_config({**BASE, **sections}, {})


def test_a_failed_probe_stays_away_until_after_the_next_probe_so_probes_spread():
    clock, state = Clock(), flow(breaker_cooldown=5.0)
    worker, seen = step(state, clock)
    open_breaker(state, clock)
    clock.sleep(5)
    worker.admit(10)
    worker.received([{"ReceiptHandle": "probe"}])
    # WHEN the probe fails as Unavailable
    error = Unavailable("HTTP 503")
    worker.after(message("p", receipt_handle="probe"), error)
    # THEN the breaker reopens for 10 s and that message is visible again only after it
    assert [t.to for t in seen] == ["probing", "open"]
    assert error.retry_after == 11
    assert decide(message("p"), error, config_with(flow={"breaker_cooldown": 5})).delay == 11


@pytest.mark.parametrize(
    ("max_receive_count", "result", "says"),
    [
        (5, "warning", "SQS moves failing messages before sqs-poller can record why"),
        (6, "warning", "room for about 1 downstream outage(s) above max_receives 5"),
        (7, "warning", "raise it to at least 8"),
        (8, "ok", "room for about 3 downstream outages"),
        (20, "ok", "room for about 15 downstream outages"),
    ],
)
def test_check_warns_when_redrive_leaves_too_little_room_for_outages(max_receive_count, result, says):
    # GIVEN the queue's redrive policy and max_receives = 5 WHEN checked
    policy = json.dumps(
        {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:dlq", "maxReceiveCount": max_receive_count}
    )
    row = redrive_row({"RedrivePolicy": policy}, 5)
    # THEN a warning when outages could push messages past maxReceiveCount, naming the room
    assert row[:2] == ("redrive", result)
    assert says in row[2]


def test_a_paused_worker_makes_no_receive_calls_and_keeps_beating():
    # GIVEN a worker (on an in-memory SQS) with messages waiting, and its host's breaker open
    sqs = MemorySqs()
    for n in range(5):
        sqs.put(f"m{n}")
    worker, _ = make_worker(sqs, lambda message: None)
    worker._beat = SimpleNamespace(value=0.0)
    fail(worker.flow, time.monotonic, len(worker.flow.ring))
    # WHEN its loop runs for a second and a half
    threading.Timer(1.5, worker.begin_stop, args=("test",)).start()
    started = time.time()
    while not worker.stopping:
        worker.loop()
    # THEN it received nothing, heard the stop, and its heartbeat kept going meanwhile
    assert sqs.receives == 0 and worker.stopping
    assert worker._beat.value >= started + 1
    worker.shutdown()
