"""The supervisor's view of its workers' liveness, from their beats (a shared double each
worker's main thread writes at least once a second, whatever its receives and handlers do)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from poller.timeouts import BEAT_STALE, UNRESPONSIVE_AFTER


def worker_problems(slots: Sequence[Any], retiring: Sequence[Any], now: float) -> list[str]:
    """What keeps the workers from being healthy ([] when every one is alive and beating)."""
    problems = []
    for slot in list(slots):
        process, beat = slot.process, slot.beat
        if process is None or process.exitcode is not None:
            problems.append(f"worker {slot.index}: not running")
        elif beat is None or beat.value == 0.0:
            if not any(r.index == slot.index and r.process.exitcode is None for r in retiring):
                problems.append(f"worker {slot.index}: starting")  # (a successor: its predecessor polls)
        elif now - beat.value > BEAT_STALE:
            problems.append(f"worker {slot.index}: no poll for {now - beat.value:.0f}s")
    return problems


def wedged(slots: Iterable[Any], now: float) -> list[tuple[Any, float]]:
    """Booted workers silent for UNRESPONSIVE_AFTER, with how long: to be killed and restarted."""
    out = []
    for slot in slots:
        process, beat = slot.process, slot.beat
        if process is None or process.exitcode is not None or beat is None or not beat.value:
            continue
        if now - beat.value > UNRESPONSIVE_AFTER:
            out.append((slot, now - beat.value))
    return out


def healthy_detail(flows: Mapping[str, Any], held: str, workers: int) -> str:
    """STATUS= and /healthz's text while healthy: which queues' breakers pause them (paused is
    healthy: the workers beat while they wait), and what an operator holds (`held`)."""
    named = len(flows) > 1
    paused = [
        f"{name}: {why}" if named else why for name, state in flows.items() if (why := state.describe())
    ]
    first = "paused: " + "; ".join(paused) if paused else f"ok: {workers} workers polling"
    return "; ".join(filter(None, [first, held]))
