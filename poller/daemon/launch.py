"""A worker process, started by exec of a fresh interpreter (what multiprocessing's "spawn"
does, minus its resource tracker: one more Python process, 12 MB, that we do not need).

The child runs `poller.daemon.boot.main`, which reads its start-up arguments, pickled, from a
pipe; the shared memory they refer to (heartbeat, flow control) is passed as descriptors.
The object answers what the supervisor asks of a process: pid, exitcode, join, kill, close.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from typing import Any

BOOT = "from poller.daemon.boot import main; main()"


class WorkerProcess:
    def __init__(self, config: Any, index: int, beat: Any, flow: Any):
        self.args = (config, index, beat, flow)
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config, index, beat, flow = self.args
        args = pickle.dumps(self.args, protocol=pickle.HIGHEST_PROTOCOL)
        payload = pickle.dumps((sys.path, config.logging.format, args), protocol=pickle.HIGHEST_PROTOCOL)
        read, write = os.pipe()
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-c", BOOT, str(read)],
                pass_fds=(read, beat.fd, flow.memory.fd),
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
        if self._popen is None:
            return
        if not timeout:
            self._popen.poll()
            return
        deadline = time.monotonic() + timeout
        while self._popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def kill(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()

    def close(self) -> None:
        """After it exited: the heartbeat's memory goes (flow control's is the supervisor's)."""
        self.args[2].close()
