"""Operator control: queues paused (each until an optional expiry) and quiet (every queue
paused), owned by the supervisor and published to its workers through the run directory.

The supervisor's `Control` holds two states: the host's own (`sqs-poller pause` and friends,
over the control socket: controlsocket.py) and the fleet's (the SSM parameter: fleet.py). The
workers obey their union. It is written to `control.json` in the run directory (a new file
renamed over the old one), and a worker's `ControlView` looks at that file's identity at most
every LOOK_EVERY seconds: one stat, nothing read while nothing changed. An expiry is an
absolute UTC time, so a pause `--for 15m` ends by itself on every host, in the workers too,
whether or not the supervisor has rewritten the file yet.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LOOK_EVERY = 0.5  # a worker looks at the file this often, at most: a pause reaches it within 2 s
FILE = "control.json"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `1d`, `1h30m` or plain seconds, as seconds; ValueError otherwise."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    elif re.fullmatch(r"(\d+[smhd])+", text):
        seconds = float(sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", text)))
    else:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be more than 0")
    return seconds


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class State:
    """What operators asked: queue name -> until (UTC seconds) or None (until resumed); quiet."""

    paused: dict[str, float | None] = field(default_factory=dict)
    quiet: bool = False

    def active(self, now: float) -> State:
        """Without the pauses that have expired."""
        return State({q: u for q, u in self.paused.items() if u is None or u > now}, self.quiet)

    def union(self, other: State) -> State:
        """Paused where either is; the longer of two expiries (None, no expiry, is longest)."""
        paused = dict(self.paused)
        for queue, until in other.paused.items():
            mine = paused.get(queue, 0.0)
            paused[queue] = None if mine is None or until is None else max(mine, until)
        return State(paused, self.quiet or other.quiet)

    def receiving(self, queue: str, now: float) -> bool:
        if self.quiet:
            return False
        if queue not in self.paused:
            return True
        until = self.paused[queue]
        return until is not None and until <= now

    def to_json(self) -> dict[str, Any]:
        return {
            "quiet": self.quiet,
            "paused": {q: None if u is None else iso(u) for q, u in sorted(self.paused.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        """From `to_json`'s shape; ValueError naming what is wrong."""
        paused = data.get("paused", {}) if isinstance(data, Mapping) else None
        if not isinstance(paused, Mapping):
            raise ValueError('expected {"quiet": bool, "paused": {"QUEUE": "UTC time" or null}}')
        out: dict[str, float | None] = {}
        for queue, until in paused.items():
            if until is not None and not isinstance(until, str):
                raise ValueError(f"paused.{queue}: expected an ISO-8601 UTC time or null")
            out[str(queue)] = None if until is None else from_iso(until)
        return cls(out, bool(data.get("quiet", False)))


def describe(state: State, now: float) -> str:
    """One line for STATUS= and `status`; "" while nothing is paused."""
    if state.quiet:
        return "quiet: every queue paused by an operator"
    if not state.paused:
        return ""
    names = [q if u is None else f"{q} (until {iso(u)})" for q, u in sorted(state.paused.items())]
    return "paused by an operator: " + ", ".join(names)


# --- the supervisor's side ------------------------------------------------------------------------


class Control:
    """The host's control state, changed by the control socket's thread (`command`) and the
    fleet thread (`set_fleet`), expired by `expire`; every change is published at once."""

    def __init__(
        self,
        queues: Sequence[str],
        run_dir: str,
        log: Any,
        gauge: Any = None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ):
        self.queues = list(queues)
        self.path = os.path.join(run_dir, FILE)
        self.log = log
        self.gauge = gauge  # sqs_poller_queue_paused{queue}
        self.on_change = on_change  # wakes the supervisor's loop: STATUS= says it
        self.clock = clock
        self.local = State()
        self.fleet = State()
        self.lock = threading.Lock()
        self._publishing = threading.Lock()  # the control and control-fleet threads both publish
        self.published: State | None = None
        self.publish()

    def effective(self) -> State:
        now = self.clock()
        with self.lock:
            return self.local.active(now).union(self.fleet.active(now))

    def describe(self) -> str:
        return describe(self.effective(), self.clock())

    def command(self, request: Mapping[str, Any], who: Mapping[str, Any]) -> dict[str, Any]:
        """pause (queue, seconds), resume (queue), quiet, unquiet: from the control socket."""
        name, queue = request.get("command"), request.get("queue")
        if name in ("pause", "resume") and queue not in self.queues:
            return {"ok": False, "error": "unknown_queue", "queue": queue, "queues": self.queues}
        now = self.clock()
        with self.lock:
            if name == "pause":
                seconds = request.get("seconds")
                self.local.paused[queue] = None if seconds is None else now + float(seconds)
            elif name == "resume":
                self.local.paused.pop(queue, None)
            elif name in ("quiet", "unquiet"):
                self.local.quiet = name == "quiet"
            else:
                return {"ok": False, "error": "unknown_command", "command": name}
        until = self.local.paused.get(queue) if name == "pause" else None
        fields = {"queue": queue} if queue else {}
        if until is not None:
            fields["until"] = iso(until)
        self.log.info("control_changed", command=name, source="local", **fields, **who)
        self.publish()
        return {"ok": True, "state": self.effective().to_json(), "status": self.describe()}

    def set_fleet(self, state: State, by: str) -> None:
        """The fleet parameter's state, as read (fleet.py)."""
        with self.lock:
            changed, self.fleet = state != self.fleet, state
        if changed:
            self.log.info("control_changed", source="fleet", by=by, fleet=state.to_json())
            self.publish()

    def expire(self) -> None:
        """On the control thread's every turn: publish when a pause has expired."""
        if self.effective() != self.published:
            self.log.info("control_expired", state=self.effective().to_json())
            self.publish()

    def publish(self) -> None:
        """Write the effective state for the workers (renamed into place), set the gauge."""
        with self._publishing:
            state = self.effective()
            temporary = f"{self.path}.{os.getpid()}.tmp"
            with open(temporary, "w", encoding="utf-8") as fh:
                json.dump(state.to_json(), fh)
            os.replace(temporary, self.path)
            self.published = state
            if self.gauge is not None:
                for queue in self.queues:
                    self.gauge.labels(queue=queue).set(0 if state.receiving(queue, self.clock()) else 1)
        self.on_change()


# --- a worker's side ------------------------------------------------------------------------------


class ControlView:
    """A worker's view of the host's control state. `refresh()` is cheap (at most one stat
    every LOOK_EVERY seconds); `receiving(queue)` is False while that queue is paused or the
    host is quiet. A missing or unreadable file means nothing is paused."""

    def __init__(self, run_dir: str, clock: Callable[[], float] = time.monotonic):
        self.path = os.path.join(run_dir, FILE)
        self.clock = clock
        self.state = State()
        self._identity: tuple[int, int, int] | None = None
        self._next_look = 0.0

    def refresh(self) -> bool:
        """Look at the file if LOOK_EVERY has passed; True when the state changed."""
        now = self.clock()
        if now < self._next_look:
            return False
        self._next_look = now + LOOK_EVERY
        try:
            st = os.stat(self.path)
            identity: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            identity = None
        if identity == self._identity:
            return False
        state = read_state(self.path) if identity else State()
        if state is None:  # unreadable: look again next time
            return False
        old, self.state, self._identity = self.state, state, identity
        return self.state != old

    def receiving(self, queue: str) -> bool:
        state = self.state
        if not state.paused and not state.quiet:  # the usual case, on every turn
            return True
        return state.receiving(queue, time.time())


def read_state(path: str) -> State | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return State.from_json(json.load(fh))
    except (OSError, ValueError):
        return None
