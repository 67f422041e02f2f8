"""A fleet "instance": `python -m poller run` (its own process tree) with its own IMDS stand-in.
A reader thread keeps every line the daemon prints in a log file and the `emf_scaling` records
in memory, as the CloudWatch agent would ship them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.fleet.standins import Imds
from bench.harness import REPO, descendants
from poller.dev.localsqs import free_port


class Instance:
    def __init__(self, number: int, config: Path, workdir: Path, record_file: Path, launched: float):
        self.instance_id = f"i-fleet{number:04d}"
        self.number = number
        self.launched = launched  # drill time of the launch decision
        self.imds = Imds(self.instance_id)
        self.log = workdir / f"{self.instance_id}.log"
        self.emf: list[dict[str, Any]] = []
        self.ready_at: float | None = None  # monotonic, from the daemon's `ready` log line
        self.terminate_at: float | None = None  # monotonic, when set to Terminated
        self.exited_at: float | None = None
        self._lock = threading.Lock()
        env = {
            **os.environ,
            "RECORD_FILE": str(record_file),
            "FLEET_INSTANCE": self.instance_id,
            "SQS_POLLER_LIFECYCLE_IMDS_URL": self.imds.url,
            "SQS_POLLER_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poller", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "wb") as out:
            for raw in self.proc.stdout:
                out.write(raw)
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(line, dict):
                    continue
                if line.get("event") == "emf_scaling":
                    with self._lock:
                        self.emf.append(line)
                elif line.get("event") == "ready" and self.ready_at is None:
                    self.ready_at = time.monotonic()
            out.flush()

    def emf_between(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.emf if start_ms <= r["_aws"]["Timestamp"] < end_ms]

    def terminate(self) -> None:
        """What Auto Scaling does on scale-in with a termination lifecycle hook."""
        self.terminate_at = time.monotonic()
        self.imds.state = "Terminated"

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        return False

    def wait_exit(self, timeout: float) -> int | None:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.alive()
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """The whole tree, at once (only for an instance that did not exit when asked)."""
        for pid in reversed(descendants(self.proc.pid)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def close(self) -> None:
        self.kill()
        self.imds.close()
