"""poller.shared: memory and a lock shared with processes started by exec (as workers are)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time

from poller.config import FlowConfig
from poller.pipeline.flow import COOLDOWN, NEXT_START, FlowState
from poller.shared import Beat

CHILD = """
import pickle, sys, time
state, beat = pickle.loads(bytes.fromhex(sys.argv[1]))
beat.value = 42.5  # seen by the parent
state.values[{next_start}] += 1.0
with state.lock:  # held by the parent until it writes
    print("locked", state.values[{next_start}], flush=True)
"""


def run_child(*objects):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD.format(next_start=NEXT_START), pickle.dumps(objects).hex()],
        pass_fds=[o.memory.fd for o in objects],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_child_process_shares_the_flow_state_the_heartbeat_and_the_lock():
    # GIVEN a flow state and a heartbeat, handed to a child process by descriptor
    state, beat = FlowState(FlowConfig(breaker_cooldown=7.0)), Beat()
    assert beat.value == 0.0 and state.values[COOLDOWN] == 7.0
    # WHEN the parent holds the lock while the child writes and then asks for it
    with state.lock:
        child = run_child(state, beat)
        deadline = time.monotonic() + 20
        while beat.value == 0.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the child is now waiting for the lock
        assert child.poll() is None
        state.values[NEXT_START] += 10.0
    out, _ = child.communicate(timeout=20)
    # THEN the child's writes are the parent's, its attached state kept the parent's values, and
    # it took the lock only after the parent let go (it saw the parent's write)
    assert beat.value == 42.5
    assert out.split() == ["locked", "11.0"]
    assert state.values[COOLDOWN] == 7.0


def test_a_lock_held_by_a_killed_process_is_released():
    # GIVEN a child that takes the host lock and is killed while it holds it
    state = FlowState(FlowConfig())
    code = (
        "import pickle, sys, time; state = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "state.lock.__enter__(); print(1, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, pickle.dumps(state).hex()],
        pass_fds=[state.memory.fd],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "1"
    child.kill()
    child.wait()
    # WHEN this process asks for it THEN it gets it (a semaphore would stay taken forever)
    with state.lock:
        state.values[NEXT_START] = 1.0
    assert state.values[NEXT_START] == 1.0
