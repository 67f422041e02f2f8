"""A worker obeys the operator's word (poller/daemon/control.py): a paused queue starts no
receive, what it holds unstarted goes back, resume restores it. On the in-memory SQS."""

from __future__ import annotations

import time

from poller.daemon.control import Control
from poller.daemon.rundir import run_dir
from poller.dev.memsqs import MemorySqs
from tests.daemon import memworker


class Log:
    def info(self, *args, **kwargs):
        pass


def turns(worker, seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        worker.loop()


def test_a_paused_queue_starts_no_receive_and_resume_restores_it():
    # GIVEN a worker of the queue "jobs", paused by an operator
    sqs = MemorySqs()
    handled = []
    worker, _ = memworker.make_worker(sqs, lambda m: handled.append(m.body))
    control = Control(["jobs"], run_dir(), Log())
    try:
        control.command({"command": "pause", "queue": "jobs"}, {})
        turns(worker, 0.7)  # its next look at the operator's word
        receives = sqs.receives

        # WHEN messages arrive and it runs on for a second
        for n in range(3):
            sqs.put(f"m{n}")
        turns(worker, 1.0)

        # THEN it made no receive at all, handled nothing, and kept beating (healthy)
        assert sqs.receives == receives and handled == []

        # WHEN the queue is resumed THEN within a look the messages are handled
        control.command({"command": "resume", "queue": "jobs"}, {})
        deadline = time.monotonic() + 5
        while len(handled) < 3 and time.monotonic() < deadline:
            worker.loop()
        assert sorted(handled) == ["m0", "m1", "m2"]
    finally:
        control.command({"command": "resume", "queue": "jobs"}, {})
        worker.begin_stop("test over")
        assert worker.shutdown() == 0


def test_what_a_receive_out_brings_after_the_pause_goes_back_unstarted():
    # GIVEN a worker whose receive takes a second, out when the operator pauses its queue
    sqs = MemorySqs(round_trip=1.0)
    handled = []
    worker, registry = memworker.make_worker(sqs, lambda m: handled.append(m.body))
    control = Control(["jobs"], run_dir(), Log())
    try:
        held = [sqs.put(f"m{n}") for n in range(3)]
        turns(worker, 0.1)
        assert worker.receiver.out == 1
        control.command({"command": "pause", "queue": "jobs"}, {})

        # WHEN the reply comes back with the 3 messages
        turns(worker, 1.5)

        # THEN they went back at once (visibility 0), unstarted, and none was handled
        assert handled == []
        assert sorted(r for r, seconds, _ in sqs.visibility if seconds == 0) == sorted(held)
        assert registry.get_sample_value("sqs_poller_messages_total", {"outcome": "released"}) == 3
        assert len(worker.held) == 0
    finally:
        control.command({"command": "resume", "queue": "jobs"}, {})
        worker.begin_stop("test over")
        worker.shutdown()
