"""The drill's traffic and what the handlers recorded: a paced producer thread (each body a
unique id and its send time) following the phases' rates, and a reader of the RECORD_FILE the
handlers append to."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

TICK = 0.1  # seconds between the producer's sends


class Producer(threading.Thread):
    """Sends to every queue at `rates(t)` messages a second (t: seconds since start), in batches
    of up to ten, until stopped. `sent` maps each id to (queue, send time)."""

    def __init__(self, sqs: Any, urls: dict[str, str], rates: Callable[[float], dict[str, float]]):
        super().__init__(daemon=True, name="producer")
        self.sqs = sqs
        self.urls = urls
        self.rates = rates
        self.sent: dict[str, tuple[str, float]] = {}
        self.errors: list[str] = []
        self.started_at = 0.0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        self.started_at = time.monotonic()
        owed = dict.fromkeys(self.urls, 0.0)
        next_tick = self.started_at
        while not self._halt.is_set():
            rates = self.rates(time.monotonic() - self.started_at)
            for name, url in self.urls.items():
                owed[name] += rates.get(name, 0.0) * TICK
                while owed[name] >= 1:
                    count = min(10, int(owed[name]))
                    self._send(name, url, count)
                    owed[name] -= count
            next_tick += TICK
            self._halt.wait(max(0.0, next_tick - time.monotonic()))

    def _send(self, name: str, url: str, count: int) -> None:
        now = time.time()
        ids = [uuid.uuid4().hex for _ in range(count)]
        entries = [
            {"Id": str(n), "MessageBody": json.dumps({"id": i, "t": now, "queue": name})}
            for n, i in enumerate(ids)
        ]
        try:
            response = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        except Exception as exc:  # a send that failed was never sent: it cannot be lost
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        failed = {int(f["Id"]) for f in response.get("Failed", [])}
        with self._lock:
            for n, i in enumerate(ids):
                if n not in failed:
                    self.sent[i] = (name, now)

    def sent_copy(self) -> dict[str, tuple[str, float]]:
        with self._lock:
            return dict(self.sent)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


class Records:
    """What the handlers appended to the record file, read as it grows."""

    def __init__(self, path: Path):
        self.path = path
        path.touch()
        self.lines: list[dict[str, Any]] = []
        self.ended: set[str] = set()  # body ids whose handler finished at least once
        self._offset = 0

    def read(self) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for raw in complete.splitlines():
            line = json.loads(raw)
            self.lines.append(line)
            if line["phase"] == "end":
                self.ended.add(line["id"])

    def oldest_age(self, sent: dict[str, tuple[str, float]], now: float) -> dict[str, float]:
        """By queue: the age of the oldest message sent and not yet handled (0: none)."""
        oldest: dict[str, float] = {}
        for i, (queue, at) in sent.items():
            if i not in self.ended and at < oldest.get(queue, now):
                oldest[queue] = at
        return {queue: now - at for queue, at in oldest.items()}
