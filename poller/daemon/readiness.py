"""Readiness: do this host's receives work? Each worker records when its receives started
failing and why (`ReceiveHealth`, a small file in the run directory, written only when that
changes); the supervisor reads them for /readyz (`read_readiness`).

Liveness (/healthz) is separate: a regional SQS outage keeps the loops alive and /healthz 200,
so the fleet does not replace itself; readiness says 503, so a broken deploy fails its canary.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterable

from poller.daemon.rundir import run_dir
from poller.errors import SqsError

# Errors no wait will cure: the queue is missing, access is denied, the credentials are bad.
PERMANENT = re.compile(
    r"NonExistentQueue|QueueDoesNotExist|AccessDenied|InvalidClientTokenId|UnrecognizedClient|"
    r"SignatureDoesNotMatch|InvalidSecurity|MissingAuthenticationToken|IncompleteSignature|"
    r"ExpiredToken|NoCredentials|InvalidAddress|KmsAccessDenied|KmsDisabled"
)


def is_permanent(code: str) -> bool:
    return bool(PERMANENT.search(code))


def _path(root: str, pid: int) -> str:
    return os.path.join(root, "receive", f"{pid}.json")


class ReceiveHealth:
    """One worker's receive streak: `ok()` after a receive succeeds, `failed(exc)` after one
    fails. Writes its file only when the state changes, never once a receive."""

    def __init__(self, root: str | None = None, pid: int | None = None):
        self.path = _path(root or run_dir(), pid or os.getpid())
        self._state: tuple[str, str] = ("ok", "")
        self._since = 0.0
        self._lock = threading.Lock()  # a worker may run several receives at once

    def ok(self) -> None:
        with self._lock:
            if self._state != ("ok", ""):
                self._state = ("ok", "")
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    def failed(self, exc: SqsError) -> None:
        with self._lock:
            if self._state == ("failing", exc.code):
                return
            since = time.time() if self._state[0] == "ok" else self._since
            self._state, self._since = ("failing", exc.code), since
            record = {
                "since": since,
                "code": exc.code,
                "error": str(exc)[:300],
                "permanent": is_permanent(exc.code),
            }
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
            os.replace(tmp, self.path)  # the supervisor never reads half a record


def read_readiness(
    workers: Iterable[tuple[int, int]], window: float, root: str | None = None
) -> tuple[bool, str]:
    """(ready, reason) from the (index, pid) of each running worker: not ready when one's
    receives fail with a permanent error, or have failed for longer than `window` seconds."""
    root = root or run_dir()
    now = time.time()
    problems = []
    for index, pid in workers:
        try:
            with open(_path(root, pid), encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            continue  # no record: its receives work (or it has not tried yet: liveness says so)
        failing = now - float(record["since"])
        if record.get("permanent") or failing > window:
            problems.append(f"worker {index}: receives failing for {failing:.0f}s: {record['error']}")
    if problems:
        return False, "; ".join(problems)
    return True, "ok: receives succeed"
