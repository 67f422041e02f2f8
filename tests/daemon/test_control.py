"""The control state: durations, the union of the host's and the fleet's word, expiry, and a
worker's cheap view of what the supervisor published."""

from __future__ import annotations

import json
import os

import pytest
from prometheus_client import CollectorRegistry

from poller.daemon.control import Control, ControlView, State, describe, parse_duration
from poller.daemon.metrics import Metrics


class Log:
    def __init__(self):
        self.lines = []

    def info(self, event, **fields):
        self.lines.append((event, fields))


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.mark.parametrize(
    "text, seconds", [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("45", 45)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0s", "", "5 m", "-1"])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_union_keeps_the_longer_pause_and_either_quiet():
    host = State({"a": 100.0, "b": None}, quiet=False)
    fleet = State({"a": 200.0, "b": 50.0, "c": 10.0}, quiet=True)
    both = host.union(fleet)
    assert both.paused == {"a": 200.0, "b": None, "c": 10.0} and both.quiet
    assert both.active(150.0).paused == {"a": 200.0, "b": None}


def test_the_published_form_round_trips_and_bad_forms_are_refused():
    state = State({"jobs": 1_800_000_000.0, "mail": None}, quiet=True)
    assert State.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert state.to_json()["paused"]["jobs"] == "2027-01-15T08:00:00Z"
    for bad in ([], {"paused": []}, {"paused": {"jobs": 5}}):
        with pytest.raises(ValueError):
            State.from_json(bad)


def test_a_command_changes_the_state_publishes_it_and_logs_who_asked(tmp_path):
    # GIVEN the supervisor's control of two queues
    log, clock = Log(), Clock()
    metrics = Metrics(CollectorRegistry())
    woken = []
    control = Control(
        ["jobs", "mail"], str(tmp_path), log, metrics.queue_paused, lambda: woken.append(1), clock
    )
    view = ControlView(str(tmp_path))
    view.refresh()
    assert view.receiving("jobs") and view.receiving("mail")

    # WHEN an operator pauses jobs for 60 s
    who = {"uid": 0, "pid": 42, "user": "root"}
    reply = control.command({"command": "pause", "queue": "jobs", "seconds": 60}, who)

    # THEN it is published, the gauge says so, STATUS= is woken, and one line says who asked
    assert reply["ok"] and reply["state"]["paused"] == {"jobs": "2027-01-15T08:01:00Z"}
    view._next_look = 0  # (its next look is due)
    assert view.refresh() and not view.receiving("jobs") and view.receiving("mail")
    assert metrics.queue_paused.labels(queue="jobs")._value.get() == 1
    assert metrics.queue_paused.labels(queue="mail")._value.get() == 0
    assert len(woken) == 2  # at start, and for the pause
    assert log.lines[-1] == (
        "control_changed",
        {"command": "pause", "source": "local", "queue": "jobs", "until": "2027-01-15T08:01:00Z", **who},
    )
    assert control.describe() == "paused by an operator: jobs (until 2027-01-15T08:01:00Z)"

    # WHEN the 60 s pass THEN the pause expires by itself, and is published as such
    clock.now += 61
    control.expire()
    assert log.lines[-1][0] == "control_expired"
    assert metrics.queue_paused.labels(queue="jobs")._value.get() == 0
    view._next_look = 0
    assert view.refresh() and view.receiving("jobs")


def test_an_unknown_queue_or_command_changes_nothing(tmp_path):
    control = Control(["jobs"], str(tmp_path), Log())
    assert control.command({"command": "pause", "queue": "nope"}, {}) == {
        "ok": False,
        "error": "unknown_queue",
        "queue": "nope",
        "queues": ["jobs"],
    }
    assert control.command({"command": "explode"}, {})["error"] == "unknown_command"
    assert control.effective() == State()


def test_quiet_pauses_every_queue_and_the_fleet_adds_to_the_host(tmp_path):
    control = Control(["jobs", "mail"], str(tmp_path), Log())
    control.set_fleet(State({"mail": None}), by="ops (uid 1000) on bastion")
    assert not control.effective().receiving("mail", 0) and control.effective().receiving("jobs", 0)
    control.command({"command": "quiet"}, {})
    assert describe(control.effective(), 0) == "quiet: every queue paused by an operator"
    control.command({"command": "unquiet"}, {})
    control.command({"command": "resume", "queue": "mail"}, {})  # the host's resume: the fleet's pause holds
    assert not control.effective().receiving("mail", 0)


def test_a_worker_looks_at_most_twice_a_second_and_only_stats_while_nothing_changes(tmp_path, monkeypatch):
    # GIVEN a worker's view, with a clock of its own
    now = [100.0]
    view = ControlView(str(tmp_path), clock=lambda: now[0])
    control = Control(["jobs"], str(tmp_path), Log())
    assert not view.refresh()  # the file says nothing is paused: as before
    control.command({"command": "pause", "queue": "jobs"}, {})

    # WHEN it asks again within half a second THEN it has not looked
    now[0] += 0.3
    assert not view.refresh() and view.receiving("jobs")
    # WHEN half a second has passed THEN it sees the pause
    now[0] += 0.3
    assert view.refresh() and not view.receiving("jobs")
    # AND while the file is unchanged it is not read again
    opened = []
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or (_ for _ in ()).throw(OSError))
    now[0] += 1
    assert not view.refresh() and opened == []


def test_a_missing_or_broken_file_means_nothing_changes(tmp_path):
    view = ControlView(str(tmp_path), clock=lambda: 0.0)
    assert not view.refresh() and view.receiving("jobs")
    (tmp_path / "control.json").write_text("{not json")
    view._next_look = 0
    assert not view.refresh() and view.receiving("jobs")
    os.unlink(tmp_path / "control.json")
