"""A worker process, started by exec of a fresh interpreter (what multiprocessing's "spawn"
does, minus its resource tracker: one more Python process, 12 MB, that we do not need).

The child runs `poller.daemon.boot.main`, which reads its start-up arguments, pickled, from a
pipe; the shared memory they refer to (heartbeat, flow control) is passed as descriptors.
The object answers what the supervisor asks of a process: pid, exitcode, join, kill, close.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from typing import Any

from poller.shared import Beat

BOOT = "from poller.daemon.boot import main; main()"
# SIGUSR2: a worker is ready, or asked for a successor (recycle.py); like SIGCHLD, it only wakes
# the supervisor's loop.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR2)


class Launcher:
    """What every worker inherits (the metrics and run directories, the flow-control memory),
    and the starting of workers. `python -m poller run` makes it and starts the first workers
    before it imports the supervisor (structlog, prometheus_client, http.server: ~0.1 s), so
    they boot while the supervisor does. Signals that arrive meanwhile are kept for it."""

    def __init__(self, config: Any):
        from poller.daemon.metrics import prepare_multiproc_dir
        from poller.daemon.rundir import prepare_run_dir

        self.metrics_dir, self._owned = prepare_multiproc_dir()
        self.run_dir = prepare_run_dir()
        self.flows = flow_states(config)  # shared by every worker: host-wide, one a queue
        self.early: dict[int, WorkerProcess] = {}
        self.signals: list[int] = []
        self._previous: dict[int, Any] = {}

    def start_early(self, config: Any) -> None:
        self._previous = {s: signal.signal(s, self._keep) for s in HANDLED_SIGNALS}
        for index in range(config.workers.processes):
            self.early[index] = self._start(config, index)

    def _keep(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def start(self, config: Any, index: int) -> WorkerProcess:
        """A worker for this slot: the one started early (with this config), else a new one."""
        return self.early.pop(index, None) or self._start(config, index)

    def _start(self, config: Any, index: int) -> WorkerProcess:
        process = WorkerProcess(config, index, Beat(), self.flows)
        process.start()
        return process

    @property
    def flow(self) -> Any:
        """The first queue's flow-control state (the one-queue form's)."""
        return next(iter(self.flows.values()))

    def renew_flow(self, config: Any) -> None:
        """A reload: queues whose [flow] changed (and new ones) get fresh state for the new
        workers; the old workers keep theirs until they exit."""
        fresh = flow_states(config, keep=self.flows)
        for name, state in self.flows.items():
            if fresh.get(name) is not state:
                state.memory.close()  # the old workers keep their own mapping until they exit
        self.flows = fresh

    def close(self) -> None:
        from poller.daemon.metrics import remove_multiproc_dir
        from poller.daemon.rundir import remove_run_dir

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        remove_multiproc_dir(self.metrics_dir, self._owned)
        remove_run_dir(self.run_dir)


def flow_states(config: Any, keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each queue's host-wide flow-control state, by name: kept from `keep` where the queue's
    [flow] is unchanged, else new."""
    from poller.daemon.lanes import lane_config
    from poller.pipeline.flow import new_flow_state

    keep = keep or {}
    return {
        spec.name: keep[spec.name]
        if spec.name in keep and keep[spec.name].config == spec.flow
        else new_flow_state(lane_config(config, spec))
        for spec in config.queues
    }


class WorkerProcess:
    def __init__(self, config: Any, index: int, beat: Beat, flow: Any):
        self.args = (config, index, beat, flow)
        self.beat = beat
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config, index, beat, flow = self.args
        args = pickle.dumps(self.args, protocol=pickle.HIGHEST_PROTOCOL)
        payload = pickle.dumps(
            (sys.path, config.logging.format, os.getpid(), args), protocol=pickle.HIGHEST_PROTOCOL
        )
        read, write = os.pipe()
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-c", BOOT, str(read)],
                pass_fds=(read, beat.fd, *(state.memory.fd for state in flow.values())),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(read)
        try:
            with open(write, "wb") as pipe:  # the child reads it all before it imports much
                pipe.write(payload)
        except BrokenPipeError:
            pass  # it died first: its exit code tells the supervisor

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    @property
    def exitcode(self) -> int | None:
        """None while running; the exit status, or minus the signal that killed it."""
        return None if self._popen is None else self._popen.poll()

    def join(self, timeout: float | None = None) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout)

    def kill(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()

    def close(self) -> None:
        """After it exited: the heartbeat's memory goes (flow control's is the supervisor's)."""
        self.args[2].close()
