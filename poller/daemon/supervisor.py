"""The supervisor: starts the worker processes, keeps them alive, reacts to signals,
serves /metrics and /healthz, and speaks to systemd.

Signal handlers only record the signal; one main loop dispatches it (`handle_<signal>`), then
converges the worker set (`reap_workers`, `manage_workers`) and reports (`notify_state`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from poller.config import Config
from poller.configload import load_config
from poller.daemon.crashes import record_crash
from poller.daemon.fleetside import InstanceSide
from poller.daemon.health import healthy_detail, wedged, worker_problems
from poller.daemon.launch import HANDLED_SIGNALS, Launcher
from poller.daemon.log import configure_logging, get_logger
from poller.daemon.metrics import Metrics, mark_process_dead, serve_metrics, stop_serving
from poller.daemon.operator import Operator
from poller.daemon.readiness import read_readiness
from poller.daemon.recycle import take_successor_request
from poller.daemon.systemd import Notifier
from poller.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_HANDLER, EXIT_OK, ConfigError

TICK = 5.0  # the loop's longest sleep: signals (a worker's exit, a successor asked for) wake it
STARTING_TICK = 0.05  # look often until READY=1: start-up time is what a cold start costs
RESTART_BACKOFF_MAX = 30.0
FORCED_STOP_GRACE = 3.0  # seconds workers get to release their messages on a forced stop
STABLE_AFTER = 60.0  # a worker that lived this long resets the restart backoff


@dataclass(eq=False)
class WorkerSlot:
    index: int
    config: Config
    process: Any = None
    beat: Any = None
    started_at: float = 0.0
    failures: int = 0
    next_start: float = 0.0
    retiring: bool = False


class Supervisor(InstanceSide):
    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        notifier: Notifier | None = None,
        launcher: Launcher | None = None,
    ):
        self.config = config
        self.launcher = launcher or Launcher(config)  # (run() starts workers early with its own)
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.log = get_logger("poller.daemon.supervisor")
        self.slots: list[WorkerSlot] = []
        self.retiring: list[WorkerSlot] = []
        self._signals: deque[int] = deque()
        self._stopping = False
        self._forced = False
        self._stop_signal = signal.SIGTERM  # SIGUSR1 for a scale-in's drain (instance.py)
        self._exit_code = EXIT_OK
        self._ready_sent = False
        self._status = ""
        self._last_watchdog = 0.0
        self.lifecycle: Any = None  # set by run() when [lifecycle] enabled or spot
        self.emf: Any = None  # set by run() when [metrics] emf_namespace is set
        self.scaling: Any = None  # the `scaling` thread (backlog.py), likewise
        self.operator: Operator | None = None  # set by run()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def flow(self) -> Any:
        return self.launcher.flow

    def run(self) -> int:
        launcher = self.launcher
        self.metrics_dir, self.run_dir = launcher.metrics_dir, launcher.run_dir
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        previous = {s: signal.signal(s, self._record_signal) for s in HANDLED_SIGNALS}
        self._signals.extend(launcher.signals)  # arrived while the early workers started
        server = None
        try:
            self.log.info(
                "supervisor_started",
                processes=self.config.workers.processes,
                concurrency=self.config.workers.concurrency,
                queues=[spec.name for spec in self.config.queues],
                pid=os.getpid(),
            )
            self.slots = [WorkerSlot(n, self.config) for n in range(self.config.workers.processes)]
            self.manage_workers()  # (adopts the workers started early)
            self.metrics = Metrics()
            for spec in self.config.queues:
                self.metrics.for_queue(spec.name).breaker_open.set(0)
            address = self.config.metrics.address
            if address:
                try:
                    server = serve_metrics(address, self.metrics_dir, self.health, self.readiness)
                except OSError as exc:
                    self.log.error("metrics_listen_failed", listen=self.config.metrics.listen, error=str(exc))
                    self._exit_code = EXIT_FAILURE
                    self.stop_workers()
                    return EXIT_FAILURE
            self._start_lifecycle()
            # pause, resume, quiet and status: the `control` thread (operator.py)
            config, slots = (lambda: self.config), (lambda: self.slots)  # (a reload replaces both)
            self.operator = Operator(config, launcher, self.metrics, self.log, self._wake, slots, self.health)
            self.operator.start()
            while not self._stopping:
                self._wait(self._tick())
                self.dispatch_signals()
                self.reap_workers()
                if self._stopping:
                    break
                self.murder_workers()
                self.manage_workers()
                self.watch_lifecycle()
                self.notify_state()
            self.stop_workers()
            self.finish_lifecycle()
            return self._exit_code
        finally:
            for part in (self.operator, self.scaling):
                if part is not None:
                    part.stop()
            if server is not None:
                stop_serving(server)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_wakeup)
            os.close(self._wake_r)
            os.close(self._wake_w)
            launcher.close()
            self.notifier.close()

    def request_stop(self) -> None:
        """Stop as on SIGTERM (from another thread, e.g. the demo)."""
        self._signals.append(signal.SIGTERM)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # --- signals ----------------------------------------------------------------------------

    def _record_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)  # only record: the main loop acts

    def _tick(self) -> float:
        """The loop's sleep: STARTING_TICK until READY=1, then TICK or less when a worker restart,
        the systemd watchdog or an instance-metadata look (every poll_seconds) is due sooner."""
        if not self._ready_sent:
            return STARTING_TICK
        now, watchdog = time.monotonic(), self.notifier.watchdog_interval or TICK
        looks = self.config.lifecycle.poll_seconds / 2 if self.lifecycle is not None else TICK
        restarts = (slot.next_start - now for slot in self.slots if slot.process is None)
        return max(0.01, min(TICK, watchdog, looks, *restarts))

    def _wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            if select.select([self._wake_r], [], [], timeout)[0]:
                os.read(self._wake_r, 4096)

    def dispatch_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.handle_term(signum)
            elif signum == signal.SIGHUP:
                self.handle_hup()
            # SIGCHLD only wakes the loop; reap_workers looks at every process anyway

    def handle_term(self, signum: int) -> None:
        self.log.info("shutdown_requested", signal=signal.Signals(signum).name)
        self._stopping = True

    def handle_hup(self) -> None:
        """Reload the config and replace the workers gracefully; a bad config changes nothing."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.log.error("reload_failed", error=str(exc), note="still running the old config")
            return
        if config.metrics.listen != self.config.metrics.listen:
            self.log.warning("reload_metrics_listen_ignored", note="takes effect on restart")
        configure_logging(config.logging.level, config.logging.format)
        self.log.info("reloading", processes=config.workers.processes)
        self.launcher.renew_flow(config)  # unchanged queues' new workers share the breaker's state
        self.config = config
        for slot in self.slots:
            self._terminate(slot, signal.SIGUSR1)
            slot.retiring = True
        self.retiring += [s for s in self.slots if s.process is not None]
        self.slots = [WorkerSlot(n, config) for n in range(config.workers.processes)]
        self._ready_sent = False
        self.manage_workers()

    # --- the worker set ---------------------------------------------------------------------

    def manage_workers(self) -> None:
        self.replace_recycled()
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None and now >= slot.next_start:
                self._spawn(slot)

    def replace_recycled(self) -> None:
        """A worker asked for a successor (near its max_messages or max_memory_mb, or with a
        handler stuck): start it now, in its slot; the old one finishes what it holds and exits
        on its own (see recycle.py)."""
        for slot in self.slots:
            if slot.process is None or slot.process.exitcode is not None:
                continue
            if not (why := take_successor_request(slot.process.pid, self.run_dir)):
                continue
            old = WorkerSlot(slot.index, slot.config, slot.process, slot.beat, slot.started_at, retiring=True)
            self.retiring.append(old)
            slot.process = None
            self._spawn(slot)
            replacing = {"worker": slot.index, "pid": old.process.pid, "successor": slot.process.pid}
            self.log.info("worker_replacing", **replacing, reason=why)

    def murder_workers(self) -> None:
        """A wedged worker (no beat for UNRESPONSIVE_AFTER) is killed and restarts as any dead one
        does, so it never costs the unit its watchdog (gunicorn's arbiter does the same)."""
        for slot, silent in wedged(self.slots, time.time()):
            self.log.error(
                "worker_unresponsive", worker=slot.index, pid=slot.process.pid, silent_for=round(silent, 1),
                note="killed; it restarts",
            )  # fmt: skip
            slot.process.kill()

    def _spawn(self, slot: WorkerSlot) -> None:
        slot.process = self.launcher.start(slot.config, slot.index)
        slot.beat = slot.process.beat
        slot.started_at = time.monotonic()
        self.log.info("worker_spawned", worker=slot.index, pid=slot.process.pid)

    def force_stop(self, workers: list[WorkerSlot]) -> float:
        """Workers release what they hold and exit without waiting for running handlers (SIGQUIT);
        returns the new deadline, after which the rest are killed."""
        self._signals.clear()
        self._forced = True
        self._exit_code = EXIT_FAILURE  # running handlers were abandoned
        self.log.warning("shutdown_forced", note="running handlers are not waited for")
        for slot in workers:
            if slot.process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGQUIT)
        return time.monotonic() + FORCED_STOP_GRACE

    def reap_workers(self) -> None:
        for slot in list(self.retiring):
            if slot.process.exitcode is not None:
                self._forget_process(slot)
                self.retiring.remove(slot)
        for slot in self.slots:
            if slot.process is None or slot.process.exitcode is None:
                continue
            code = slot.process.exitcode
            pid = slot.process.pid
            lived = time.monotonic() - slot.started_at
            booted = slot.beat is not None and slot.beat.value != 0.0  # it reported ready
            self._forget_process(slot)
            if self._stopping:
                continue
            if code == 0 and (why := take_successor_request(pid, self.run_dir)):  # before we saw it ask
                self.log.info("worker_replacing", worker=slot.index, pid=pid, reason=why)
                continue
            if not booted and code in (EXIT_HANDLER, EXIT_CONFIG):
                # Exit codes mean "cannot boot" only before ready; after that, a death is a crash.
                event = "handler_cannot_load" if code == EXIT_HANDLER else "config_cannot_work"
                self.log.error(event, worker=slot.index, note="stopping instead of restarting; see above")
                self._exit_code = code
                self._stopping = True
                continue
            # A worker that booted and then crashed (a message killed it) restarts at once; only
            # start-up failures back off, so one bad message never idles a healthy host.
            slot.failures = 1 if booted or lived >= STABLE_AFTER else slot.failures + 1
            delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** (slot.failures - 1))
            slot.next_start = time.monotonic() + delay
            self.metrics.worker_restarts.inc()
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            suspects = record_crash(pid, how, self.run_dir) if booted else []  # see crashes.py
            died = {"worker": slot.index, "pid": pid, "how": how, "suspects": len(suspects)}
            self.log.error("worker_died", **died, restart_in=round(delay, 2))

    def _forget_process(self, slot: WorkerSlot) -> None:
        slot.process.join(timeout=0)
        mark_process_dead(slot.process.pid, self.metrics_dir)
        slot.process.close()
        slot.process = slot.beat = None

    def _terminate(self, slot: WorkerSlot, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: stop now (an idle long poll is abandoned). SIGUSR1: retire, when a successor
        already polls, or drain on a scale-in: the current long poll ends normally and what it
        brings is released."""
        if slot.process is not None and slot.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, sig)

    def stop_workers(self) -> None:
        """SIGTERM (a scale-in: SIGUSR1) every worker, wait for them to drain, SIGKILL what
        outlives the deadline."""
        self.notifier.notify("STOPPING=1", "STATUS=draining")
        everyone = [s for s in self.slots + self.retiring if s.process is not None]
        for slot in everyone:
            self._terminate(slot, self._stop_signal)
        cfg = self.config
        budget = cfg.workers.shutdown_grace + max(q.queue.wait_time_seconds for q in cfg.queues) + 5
        if self.lifecycle is not None:  # a Spot notice's deadline may leave less
            budget = self.lifecycle.seconds_left(budget)
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and any(s.process.exitcode is None for s in everyone):
            self._wait(0.2)
            self.heartbeat_lifecycle()
            if signal.SIGINT in self._signals and not self._forced:  # a second Ctrl-C
                deadline = min(deadline, self.force_stop(everyone))
        for slot in everyone:
            if slot.process.exitcode is None:
                self.log.error("worker_killed", worker=slot.index, pid=slot.process.pid)
                slot.process.kill()
                slot.process.join(timeout=5)
                if self._exit_code == EXIT_OK:
                    self._exit_code = EXIT_FAILURE
            self._forget_process(slot)
        self.retiring = []
        self.log.info("supervisor_stopped", exit_code=self._exit_code)

    # --- health and systemd ----------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """Every worker alive, its main thread beating (it does every second, whatever its
        receives and handlers do)."""
        problems = worker_problems(self.slots, self.retiring, time.time())
        if problems:
            return False, "; ".join(problems)
        held = self.operator.describe() if self.operator is not None else ""  # (by an operator)
        return True, healthy_detail(self.launcher.flows, held, len(self.slots))

    def readiness(self) -> tuple[bool, str]:
        """Live, and every worker's receives succeed (see readiness.py)."""
        alive, detail = self.health()
        if not alive:
            return False, detail
        workers = [(s.index, s.process.pid) for s in list(self.slots) if s.process is not None]
        return read_readiness(workers, self.config.metrics.ready_window, self.run_dir)

    def notify_state(self) -> None:
        healthy, detail = self.health()
        if healthy and not self._ready_sent:
            self.notifier.notify("READY=1", f"STATUS={detail}")
            self.log.info("ready", workers=len(self.slots))
            self._ready_sent = True
            self._status = detail
        elif detail != self._status:
            self.notifier.notify(f"STATUS={detail}")
            self._status = detail
        interval = self.notifier.watchdog_interval
        if healthy and interval and time.monotonic() - self._last_watchdog >= interval:
            self.notifier.notify("WATCHDOG=1")
            self._last_watchdog = time.monotonic()
