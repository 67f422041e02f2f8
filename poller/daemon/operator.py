"""The supervisor's operator control, composed once: the host's control state (control.py),
the control socket and its `control` thread (controlsocket.py), the `status` figures
(status.py) and, with `[control] ssm_parameter`, the fleet's parameter (fleet.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from poller.daemon.control import LOOK_EVERY, Control
from poller.daemon.controlsocket import ControlServer, socket_path
from poller.daemon.fleet import FleetWatcher
from poller.daemon.status import StatusSampler
from poller.pipeline.flow import STATE, STATE_NAMES


class Operator:
    def __init__(
        self,
        config: Callable[[], Any],
        launcher: Any,
        metrics: Any,
        log: Any,
        wake: Callable[[], None],
        slots: Callable[[], list[Any]],
        health: Callable[[], tuple[bool, str]],
    ):
        """`config`: the supervisor's current config (a reload may change its queues; the socket
        and the fleet's parameter change on a restart); `launcher`: the run and metrics
        directories and the flow state (launch.py); `wake` wakes the supervisor's loop (STATUS=
        follows a change); `slots`: its worker slots."""
        self.config = config
        names = self.names()
        self.log = log
        self.health = health
        self.launcher = launcher
        self.slots = slots
        run_dir = launcher.run_dir
        self.control = Control(names, run_dir, log, metrics.queue_paused, wake)
        self.status = StatusSampler(
            names, launcher.metrics_dir, run_dir, self.workers, self.breaker, self.control.effective
        )
        self.path = socket_path(config())
        self.server: ControlServer | None = None
        try:
            self.server = ControlServer(self.path, self.handle, self.tick, log, metrics.count_loop_error)
        except OSError as exc:
            log.error(
                "control_listen_failed",
                socket=self.path,
                error=str(exc),
                note="pause, resume, quiet and status are unavailable on this host; set [control] socket",
            )
        self.fleet = None
        if config().control.ssm_parameter:
            self.fleet = FleetWatcher(config().control, self.control, log, metrics.count_loop_error)

    def start(self) -> None:
        if self.server is not None:
            self.server.start()
            self.log.info("control_listening", socket=self.path)
        if self.fleet is not None:
            self.fleet.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.fleet is not None:
            self.fleet.stop()

    def names(self) -> list[str]:
        return [spec.name for spec in self.config().queues]

    def workers(self) -> list[tuple[int, int, float]]:
        """(index, pid, started at) of each slot's worker (read from the `control` thread)."""
        return [(s.index, p.pid, s.started_at) for s in list(self.slots()) if (p := s.process) is not None]

    def breaker(self, queue: str) -> str:
        """The queue's breaker: its host-wide flow state's (launch.py)."""
        state = self.launcher.flows.get(queue)
        return "closed" if state is None else STATE_NAMES.get(state.values[STATE], "closed")

    def describe(self) -> str:
        return self.control.describe()

    def paused(self, queue: str) -> bool:
        """An operator paused the queue (or quieted the host), here or fleet-wide."""
        return not self.control.effective().receiving(queue, self.control.clock())

    def tick(self) -> None:
        """The `control` thread's every turn: a reload's queues, expired pauses end; a sample."""
        if (names := self.names()) != self.control.queues:
            self.control.queues = self.status.queues = names
            self.control.publish()
        self.control.expire()
        self.status.sample()

    def handle(self, request: dict[str, Any], who: dict[str, Any]) -> dict[str, Any]:
        if request.get("command") == "status":
            return {"ok": True, **self.status.report(self.health()[1])}
        reply = self.control.command(request, who)
        if reply["ok"]:  # every worker has looked once more: when the command returns, it holds
            time.sleep(LOOK_EVERY + 0.1)
        return reply
