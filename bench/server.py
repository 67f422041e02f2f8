"""moto's SQS server in its own process, so its CPU never counts as the consumer's.

`python -m bench.server PORT` serves until killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from poller.dev.localsqs import LocalSqs, free_port

REPO = Path(__file__).resolve().parent.parent


class MotoProcess:
    """The server as a child process (`module` run with the port), up once `ready()` answers."""

    module = "bench.server"

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MotoProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, str(self.port)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.ready()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not start on {self.endpoint_url}")

    def ready(self) -> None:
        urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1).close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> MotoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    server = LocalSqs(int(sys.argv[1]))
    server.start()
    try:
        while os.getppid() != 1:
            time.sleep(1)
    finally:
        server.stop()
