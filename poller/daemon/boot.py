"""The first code a worker process runs (see launch.py): kept free of imports so that the
worker loads only what its config uses (the supervisor imports this module, not the worker's)."""

from __future__ import annotations

import sys
from typing import Any


def skip_rich(log_format: str) -> None:
    """Before structlog is imported: structlog imports rich (~6 MB) when it can, and a process
    that logs JSON never renders to a terminal."""
    if log_format == "json":
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]


def start_worker(config: Any, index: int, beat: Any, flow: Any = None, supervisor: int | None = None) -> None:
    """A worker process's entry point. Exit codes: 3 the handler cannot
    load, 2 a config that can never work (a missing keyring), 1 another start-up failure; a
    booted worker exits with its stop's code (os._exit: handler threads that outlived the grace
    period must not hold the process open)."""
    skip_rich(config.logging.format)
    import os
    import signal

    client = early_client(config)
    from poller.daemon.log import configure_logging
    from poller.daemon.worker import Worker
    from poller.errors import EXIT_FAILURE, ConfigError, HandlerLoadError

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor reloads by replacing us
    configure_logging(config.logging.level, config.logging.format, worker=index)
    # flow: the host's; supervisor: the parent to outlive no longer, even if it died before now
    worker = Worker(config, index, beat, flow=flow, client=client, parent=supervisor)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(sig, worker.request_stop)
    try:
        worker.initialize()
    except (HandlerLoadError, ConfigError) as exc:  # can never work: exit 3, or 2 (a missing keyring)
        event = "handler_load_failed" if isinstance(exc, HandlerLoadError) else "worker_config_invalid"
        worker.log.error(event, error=str(exc))
        os._exit(exc.exit_code)
    except Exception as exc:
        worker.log.error("worker_start_failed", error=f"{type(exc).__name__}: {exc}")
        os._exit(EXIT_FAILURE)
    if supervisor is not None and os.getppid() == supervisor:  # (alive: its pid is not reused)
        os.kill(supervisor, signal.SIGUSR2)  # ready: it need not wait for its next tick
    os._exit(worker.run())


def early_client(config: Any) -> Any:
    """The SQS client, made before anything else is imported: botocore parses its endpoint data
    (7 MB of objects, most dropped at once; see aws.py), and what the worker imports next reuses
    that memory instead of growing the process (3 MB less resident). Its errors are reported
    once logging is up, when the worker makes the client itself."""
    try:
        from poller.sqs import worker_client

        return worker_client(config)
    except Exception:
        return None


def main() -> None:
    """`python -c BOOT FD`: the start-up arguments come pickled through the pipe FD."""
    import os
    import pickle

    with open(int(sys.argv[1]), "rb") as pipe:
        path, log_format, supervisor, args = pickle.loads(pipe.read())
    if os.getppid() != supervisor:  # it died while we started: nobody would ever stop us
        os._exit(1)
    sys.path[:] = path  # the supervisor's: a handler importable there is importable here
    sys.argv = sys.argv[:1]
    skip_rich(log_format)  # before the arguments' classes import structlog
    start_worker(*pickle.loads(args), supervisor=supervisor)
