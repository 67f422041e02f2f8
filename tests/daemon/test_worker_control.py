"""A worker obeys the operator's word (poller/daemon/control.py): a paused queue starts no
receive, what it holds unstarted goes back, resume restores it. On the in-memory SQS."""

from __future__ import annotations

import threading
import time

from poller.daemon.control import Control
from poller.daemon.rundir import run_dir
from poller.dev.memsqs import MemorySqs
from tests.daemon import memworker


class Log:
    def info(self, *args, **kwargs):
        pass


def running(worker) -> threading.Thread:
    """The worker's main loop on a thread of its own, as in its process (stop: `stop`)."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def stop(worker, thread: threading.Thread) -> None:
    worker.request_stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def wait_for(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def test_a_paused_queue_starts_no_receive_and_resume_restores_it():
    # GIVEN a running worker of the queue "jobs", paused by an operator
    sqs = MemorySqs()
    handled = []
    worker, _ = memworker.make_worker(sqs, lambda m: handled.append(m.body))
    control = Control(["jobs"], run_dir(), Log())
    thread = running(worker)
    try:
        control.command({"command": "pause", "queue": "jobs"}, {})
        time.sleep(0.7)  # its next look at the operator's word
        receives = sqs.receives

        # WHEN messages arrive and it runs on for a second
        for n in range(3):
            sqs.put(f"m{n}")
        time.sleep(1.0)

        # THEN it made no receive at all and handled nothing
        assert sqs.receives == receives and handled == []

        # WHEN the queue is resumed THEN within a look the messages are handled
        control.command({"command": "resume", "queue": "jobs"}, {})
        wait_for(lambda: len(handled) == 3, timeout=3)
        assert sorted(handled) == ["m0", "m1", "m2"]
    finally:
        control.command({"command": "resume", "queue": "jobs"}, {})
        stop(worker, thread)


def test_what_a_receive_out_brings_after_the_pause_goes_back_unstarted():
    # GIVEN a worker whose receive takes a second, out when the operator pauses its queue
    sqs = MemorySqs(round_trip=1.0)
    handled = []
    worker, registry = memworker.make_worker(sqs, lambda m: handled.append(m.body))
    control = Control(["jobs"], run_dir(), Log())
    held = [sqs.put(f"m{n}") for n in range(3)]
    thread = running(worker)
    try:
        wait_for(lambda: worker.receiver.out == 1)
        control.command({"command": "pause", "queue": "jobs"}, {})

        # WHEN the reply comes back with the 3 messages
        wait_for(lambda: sqs.receives == 1)
        time.sleep(0.5)

        # THEN they went back at once (visibility 0), unstarted, and none was handled
        assert handled == []
        assert sorted(r for r, seconds, _ in sqs.visibility if seconds == 0) == sorted(held)
        released = {"outcome": "released", "queue": "jobs"}
        assert registry.get_sample_value("sqs_poller_messages_total", released) == 3
        assert len(worker.held) == 0
    finally:
        control.command({"command": "resume", "queue": "jobs"}, {})
        stop(worker, thread)
