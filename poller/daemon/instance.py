"""What EC2 says about this instance, in one place for the supervisor: a scale-in (the Auto
Scaling termination lifecycle hook, lifecycle.py) or a Spot interruption notice or rebalance
recommendation (spot.py). Either drains as SIGTERM does, but for the receives out: when the
drain's budget allows, the workers wait for them (SIGUSR1, as a retiring worker does), so no
message comes back to a long poll nobody holds any more; a Spot notice also bounds the drain by
its deadline."""

from __future__ import annotations

import math
import signal
import time
from typing import Any

from poller.config import LifecycleConfig
from poller.daemon.lifecycle import Imds, LifecycleWatcher
from poller.daemon.spot import SpotWatcher
from poller.timeouts import READ_SLACK


class InstanceEvents:
    def __init__(self, cfg: LifecycleConfig, log: Any):
        self.log = log
        self.hook = LifecycleWatcher(cfg, log) if cfg.enabled else None
        self.spot = (
            SpotWatcher(Imds(cfg.imds_url), log, cfg.poll_seconds, cfg.rebalance_drain_seconds)
            if cfg.spot
            else None
        )
        self.deadline: float | None = None  # monotonic time a Spot drain must be over by

    def drain_reason(self) -> str | None:
        """Why this instance must drain now, or None (each source asked at most every poll)."""
        if self.spot is not None and (deadline := self.spot.drain_deadline()) is not None:
            self.deadline = deadline
            notice = self.spot.notice
            return f"spot {notice.kind if notice else 'notice'}"
        if self.hook is not None and self.hook.terminating():
            return "lifecycle hook: Terminated"
        return None

    def seconds_left(self, default: float) -> float:
        """The drain budget: `default`, or less when a Spot notice's deadline is nearer."""
        if self.deadline is None:
            return default
        return max(0.0, min(default, self.deadline - time.monotonic()))

    def stop_signal(self, config: Any) -> int:
        """How the workers are told to drain: SIGUSR1 (wait for each receive out, one long poll
        at most, and release what it brings) when the budget covers one long poll and the grace;
        SIGTERM (abandon the receives after ABANDON_GRACE) when a Spot deadline is nearer."""
        poll = max(q.queue.wait_time_seconds for q in config.queues) + READ_SLACK
        needed = poll + config.workers.shutdown_grace + 5
        return signal.SIGUSR1 if self.seconds_left(math.inf) >= needed else signal.SIGTERM

    def heartbeat(self) -> None:
        if self.hook is not None:
            self.hook.heartbeat()

    def complete(self) -> None:
        """After the drain: complete a pending lifecycle action (a hook may have become pending
        during a Spot drain, so look again)."""
        if self.hook is not None:
            self.hook.terminating()
            self.hook.complete()
