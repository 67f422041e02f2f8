"""Flow control, host-wide: a rate limit on handler starts and a circuit breaker that pauses
polling while the downstream is down (DESIGN "Flow control").

`FlowState` lives in shared memory, created once by the supervisor and handed to every worker
process (like the heartbeat), so the limit and the breaker hold for the host, not per process.
Its methods take the time as an argument and return what changed; they never log or count, so
they can be tested with a fake clock. `FlowStep` is the per-process side: the pipeline step that
books start times and records outcomes, and the receive gate the worker loop asks before each
receive (`admit`). Closed and unlimited, the step is one shared read before and after a message.

The breaker: closed -> open when `breaker_failure_ratio` of the last `breaker_min_messages`
outcomes were `Unavailable`; open -> probing after the cooldown, when exactly one worker on the
host receives one message; probing -> closed when that message did not fail as `Unavailable`,
else back to open with the cooldown doubled (up to COOLDOWN_GROWTH_CAP times the configured one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from poller.config import Config, FlowConfig
from poller.message import Message, Released, Skip, Unavailable
from poller.shared import SharedMemory

CLOSED, OPEN, PROBING = 0.0, 1.0, 2.0
STATE_NAMES = {CLOSED: "closed", OPEN: "open", PROBING: "probing"}
# Slots of the shared array of doubles.
STATE, UNTIL, COOLDOWN, NEXT_START, PROBE_DEADLINE, FILLED, FAILURES, POS, OPENED_AT = range(9)
COOLDOWN_GROWTH_CAP = 8  # a failed probe doubles the cooldown, up to 8 times the configured one
HORIZON = 0.5  # seconds of starts a worker may book ahead: never receive what cannot start soon
PAUSE_SLICE = 0.5  # a paused wait wakes this often to beat and notice a stop


class BreakerOpen(Unavailable):
    """Raised for a held message that had not started when the breaker opened: it goes back with
    its visibility set to the time left until the probe, and is not itself an outcome."""


@dataclass(frozen=True)
class Transition:
    to: str  # open | probing | closed
    cooldown: float = 0.0  # open: seconds until the probe
    failures: int = 0  # open from closed: Unavailable outcomes in the window
    window: int = 0  # ...out of this many
    paused: float = 0.0  # closed: seconds since the breaker opened
    reason: str = ""


class FlowState:
    """The host's flow-control state in shared memory: create in the supervisor, pass to workers."""

    def __init__(self, config: FlowConfig, probe_timeout: float = 600.0, memory: SharedMemory | None = None):
        self.config = config
        self.probe_timeout = probe_timeout  # a probe unreported by then (its worker died) passes on
        fresh = memory is None
        self.memory = memory or SharedMemory(8 * 9 + config.breaker_min_messages, name="sqs-poller-flow")
        self.values = self.memory.doubles(0, 9)
        self.ring = self.memory.octets(8 * 9, config.breaker_min_messages)  # 1 = that outcome was Unavailable
        self.lock = self.memory.lock()
        if fresh:
            self.values[COOLDOWN] = config.breaker_cooldown
        self.interval = 1.0 / config.max_per_second if config.max_per_second else 0.0
        self.horizon = max(HORIZON, self.interval)
        # A receive waits for room for half the horizon's starts (at most ten): the rest of the
        # schedule keeps the downstream busy meanwhile, so the rate holds.
        self.batch = (
            max(1, min(10, math.floor(round(self.horizon / self.interval / 2, 6)))) if self.interval else 1
        )

    def __reduce__(self) -> tuple[Any, ...]:  # to a worker process: the same memory, attached
        return FlowState, (self.config, self.probe_timeout, self.memory)

    # --- cheap reads (no lock) ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.values[STATE] == CLOSED

    def quiet(self) -> bool:
        """The window is full of outcomes and none failed: recording a success changes nothing."""
        v = self.values
        return v[FAILURES] == 0 and v[FILLED] >= len(self.ring)

    def describe(self) -> str:
        """One line for STATUS= and logs; "" while closed."""
        v = self.values
        if v[STATE] == OPEN:
            return "circuit breaker open: downstream unavailable, polling paused until a probe succeeds"
        if v[STATE] == PROBING:
            return "circuit breaker probing the downstream with one message"
        return ""

    # --- the receive gate ---------------------------------------------------------------------

    def admit(self, free: int, now: float) -> tuple[int, bool]:
        """How many messages a worker may receive now (0 = wait), and whether it is the probe."""
        v = self.values
        state = v[STATE]
        if state == CLOSED:
            if not self.interval:
                return free, False
            room = self.horizon - max(0.0, v[NEXT_START] - now)  # starts fit within the horizon
            fits = math.ceil(round(room / self.interval, 6)) if room > 0 else 0
            # Wait for room for a part of the horizon at once: one receive (and one delete batch)
            # per few messages, not one per message as the schedule frees a slot at a time.
            return (min(free, fits) if fits >= min(free, self.batch) else 0), False
        if (state == OPEN and now >= v[UNTIL]) or (state == PROBING and now >= v[PROBE_DEADLINE]):
            with self.lock:
                state = v[STATE]
                due = (state == OPEN and now >= v[UNTIL]) or (state == PROBING and now >= v[PROBE_DEADLINE])
                if due:  # this worker won the probe; the others stay paused
                    v[STATE] = PROBING
                    v[PROBE_DEADLINE] = now + self.probe_timeout
                    return 1, True
        return 0, False

    def wait_hint(self, now: float) -> float:
        """How long a worker refused by `admit` should wait before asking again."""
        v = self.values
        if v[STATE] == OPEN:
            return min(PAUSE_SLICE, max(0.01, v[UNTIL] - now))
        if v[STATE] == PROBING:
            return PAUSE_SLICE
        return min(PAUSE_SLICE, max(0.005, v[NEXT_START] - now - (self.horizon - self.batch * self.interval)))

    # --- the rate limit -------------------------------------------------------------------------

    def take_start(self, now: float) -> float:
        """Book the next start time on the host's schedule, one `interval` after the last one.

        Never earlier than now, so an idle spell saves up no burst."""
        with self.lock:
            start = max(now, self.values[NEXT_START])
            self.values[NEXT_START] = start + self.interval
            return start

    # --- the breaker ----------------------------------------------------------------------------

    def record(self, unavailable: bool, retry_after: float | None, now: float) -> Transition | None:
        """One message's outcome. Returns the transition to open, if this outcome caused it."""
        v, ring = self.values, self.ring
        size = len(ring)
        with self.lock:
            pos = int(v[POS])
            if v[FILLED] >= size:
                v[FAILURES] -= ring[pos]
            else:
                v[FILLED] += 1
            ring[pos] = 1 if unavailable else 0
            v[FAILURES] += ring[pos]
            v[POS] = (pos + 1) % size
            failures, filled = int(v[FAILURES]), int(v[FILLED])
            if not unavailable or v[STATE] != CLOSED or filled < size:
                return None
            if failures < self.config.breaker_failure_ratio * filled:
                return None
            cooldown = self._open(max(v[COOLDOWN], retry_after or 0.0), now)
            v[OPENED_AT] = now
        return Transition("open", cooldown, failures, filled, reason="downstream unavailable")

    def finish_probe(self, result: str, retry_after: float | None, now: float) -> Transition | None:
        """The probe's outcome: "ok" closes, "unavailable" reopens with a longer cooldown,
        "inconclusive" (it never reached the downstream) lets the next worker probe at once."""
        v = self.values
        with self.lock:
            if v[STATE] != PROBING:
                return None
            if result == "ok":
                v[STATE] = CLOSED
                v[COOLDOWN] = self.config.breaker_cooldown
                v[FILLED] = v[FAILURES] = v[POS] = 0
                self.ring[:] = bytes(len(self.ring))
                return Transition("closed", paused=now - v[OPENED_AT], reason="probe succeeded")
            if result == "unavailable":
                grown = min(v[COOLDOWN] * 2, self.config.breaker_cooldown * COOLDOWN_GROWTH_CAP)
                cooldown = self._open(max(grown, retry_after or 0.0), now, grown)
                return Transition("open", cooldown, reason="probe failed: downstream still unavailable")
            v[STATE] = OPEN
            v[UNTIL] = now
            return None

    def _open(self, cooldown: float, now: float, base: float | None = None) -> float:
        v = self.values
        v[STATE] = OPEN
        v[UNTIL] = now + cooldown
        if base is not None:
            v[COOLDOWN] = base
        return cooldown


class FlowStep:
    """The pipeline step and receive gate of one worker process, around the shared FlowState.

    `report(transition)` is called once per transition this process caused (log and metrics)."""

    def __init__(self, state: FlowState, report: Any, clock: Any = time.monotonic, sleep: Any = time.sleep):
        self.state = state
        self.report = report
        self.clock = clock
        self.sleep = sleep
        self.probe: str | None = None  # receipt handle of the probe this process runs
        self.not_answers = not_answers()
        if state.interval:  # unlimited: only the breaker's cheap check runs before a message
            self.before = self._before_limited  # type: ignore[method-assign]

    # --- the receive gate (worker loop) ---------------------------------------------------------

    def admit(self, free: int) -> tuple[int, float]:
        """(messages to receive now, else 0 and how long to wait). Takes the probe when due."""
        now = self.clock()
        count, probe = self.state.admit(free, now)
        if probe:
            self.probe = ""  # taken; the handle is known once the message arrives
            self.report(Transition("probing", reason="cooldown over: one message probes"))
        return count, (0.0 if count else self.state.wait_hint(now))

    def wait_for_turn(self, free: int, pause: Any, stopping: Any) -> int:
        """The worker loop's gate: while the breaker is open, `pause` (the worker's wait, which
        keeps beating, so paused stays healthy); with a rate limit, admit only what the host's
        schedule starts soon. Returns how many to receive, 0 once stopping."""
        while not stopping():
            count, wait = self.admit(free)
            if count:
                return count
            pause(wait)
        return 0

    def received(self, raw: list[dict[str, Any]]) -> None:
        """After each receive: note the probe's message, or that there was none (then another
        worker may probe at once)."""
        if self.probe == "":
            if raw:
                self.probe = raw[0]["ReceiptHandle"]
            else:
                self._finish_probe("inconclusive", None)

    # --- the step -------------------------------------------------------------------------------

    def blocks(self, message: Message) -> bool:
        """`before` waits only for a rate limit's turn; `after` only updates the shared state."""
        return bool(self.state.interval)

    def before(self, message: Message) -> Message:
        if not self.state.closed and message.receipt_handle != self.probe:
            raise BreakerOpen("circuit breaker open: not started", retry_after=self._time_left())
        return message

    def _before_limited(self, message: Message) -> Message:
        start = self.state.take_start(self.clock())
        while (wait := start - self.clock()) > 0:
            self.sleep(min(wait, 0.1))
            if not self.state.closed and message.receipt_handle != self.probe:
                break
        if not self.state.closed and message.receipt_handle != self.probe:
            raise BreakerOpen("circuit breaker open: not started", retry_after=self._time_left())
        return message

    def after(self, message: Message, error: BaseException | None) -> None:
        if self.probe and message.receipt_handle == self.probe:
            self._finish_probe(probe_result(error, self.not_answers), getattr(error, "retry_after", None))
            self._skip_next_probe(error)
            return
        if error is None:
            if self.state.quiet():  # the hot path: nothing has failed lately
                return
        elif isinstance(error, self.not_answers):
            return  # not an answer from the downstream
        unavailable = isinstance(error, Unavailable)
        transition = self.state.record(unavailable, getattr(error, "retry_after", None), self.clock())
        if transition is not None:
            self.report(transition)
        self._skip_next_probe(error)

    def _skip_next_probe(self, error: BaseException | None) -> None:
        """An Unavailable message goes back until just after the next probe, so that probes
        spread over the queue instead of picking the same oldest message every time."""
        if isinstance(error, Unavailable) and not self.state.closed:
            error.retry_after = max(error.retry_after or 0.0, min(43200.0, self._time_left() + 1))

    def released(self, handles: list[str]) -> None:
        """Messages sent back unstarted (an operator's pause): if the probe is one, another
        worker may probe at once instead of after the probe's timeout."""
        if self.probe and self.probe in handles:
            self._finish_probe("inconclusive", None)

    def close(self) -> None:
        if self.probe is not None:  # stopping with the probe unreported: let another worker probe
            self._finish_probe("inconclusive", None)

    def _finish_probe(self, result: str, retry_after: float | None) -> None:
        self.probe = None
        transition = self.state.finish_probe(result, retry_after, self.clock())
        if transition is not None:
            self.report(transition)

    def _time_left(self) -> float:
        left = self.state.values[UNTIL] - self.clock()
        return min(43200.0, max(0.0, left))


def not_answers() -> tuple[type[BaseException], ...]:
    """Outcomes that say nothing about the downstream: sent back unstarted, skipped by a step,
    released after an earlier message of the FIFO group failed."""
    return (BreakerOpen, Skip, Released)


def probe_result(error: BaseException | None, ignored: tuple[type[BaseException], ...] = ()) -> str:
    """The downstream answered unless the probe failed as Unavailable or never reached it."""
    if error is None:
        return "ok"
    if isinstance(error, ignored or not_answers()):
        return "inconclusive"
    return "unavailable" if isinstance(error, Unavailable) else "ok"


def new_flow_state(config: Config) -> FlowState:
    """The host's flow-control state; a probe unreported for this long is handed to another."""
    probe_timeout = config.handler.timeout + config.queue.wait_time_seconds + 30
    return FlowState(config.flow, probe_timeout)


def report_transitions(metrics: Any, log: Any) -> Any:
    """A FlowStep's `report`: one log line and the metrics, per transition this process caused."""

    def report(transition: Transition) -> None:
        metrics.breaker_transitions[transition.to].inc()
        metrics.breaker_open.set(0 if transition.to == "closed" else 1)
        if transition.to == "open":
            window = (
                {"failures": transition.failures, "window": transition.window} if transition.window else {}
            )
            log.warning(
                "breaker_opened", reason=transition.reason, probe_in=round(transition.cooldown, 1), **window
            )
        elif transition.to == "probing":
            log.info("breaker_probing", reason=transition.reason)
        else:
            log.info("breaker_closed", reason=transition.reason, paused_seconds=round(transition.paused, 1))

    return report
