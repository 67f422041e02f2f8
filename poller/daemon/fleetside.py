"""The supervisor's side of the fleet, mixed into `Supervisor`: EC2 instance events (a scale-in's
lifecycle hook, a Spot notice: instance.py) that drain it, and the CloudWatch figures it
publishes (the per-release figures once a minute, emf.py; the scaling figures on their own
thread, backlog.py)."""

from __future__ import annotations

import signal
from typing import Any


class InstanceSide:
    config: Any
    log: Any
    lifecycle: Any
    emf: Any
    scaling: Any
    _stop_signal: int
    _stopping: bool
    _ready_sent: bool

    def health(self) -> tuple[bool, str]:
        raise NotImplementedError

    def _start_lifecycle(self) -> None:
        lc = self.config.lifecycle
        if lc.enabled or lc.spot:
            from poller.daemon.instance import InstanceEvents

            self.lifecycle = InstanceEvents(lc, self.log)
        if self.config.metrics.emf_namespace:  # per-release figures; the scaling figures' thread
            from poller.daemon.backlog import start_figures

            self.emf, self.scaling = start_figures(self)

    def ready(self) -> bool:
        """Ready, and not stopping: the scaling figures count this daemon's slots."""
        return self._ready_sent and self.health()[0] and not self._stopping

    def watch_lifecycle(self) -> None:
        if self.lifecycle is not None and (reason := self.lifecycle.drain_reason()):
            self._stop_signal = self.lifecycle.stop_signal(self.config)
            how = "receives out waited for" if self._stop_signal == signal.SIGUSR1 else "as on SIGTERM"
            self.log.info("lifecycle_terminating", reason=reason, note=f"draining ({how})")
            self._stopping = True
        if self.emf is not None:
            self.emf.tick()

    def heartbeat_lifecycle(self) -> None:
        if self.lifecycle is not None:
            self.lifecycle.heartbeat()

    def finish_lifecycle(self) -> None:
        if self.emf is not None:
            self.emf.flush()  # the last partial interval
        if self.lifecycle is not None:
            self.lifecycle.complete()
