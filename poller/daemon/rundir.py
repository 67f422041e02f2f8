"""The supervisor's run directory: state its worker processes share on this host (message marks,
receive health), kept across worker restarts and removed when the supervisor stops.

The supervisor creates it (`prepare_run_dir`) and names it in $POLLER_RUN_DIR, which the workers
it spawns inherit; a worker started without one (tests, a lone Worker) gets its own. (Not
SQS_POLLER_*: that prefix is for config overrides, and an unknown one is an error.)
"""

from __future__ import annotations

import os
import shutil
import tempfile

ENV_DIR = "POLLER_RUN_DIR"


def prepare_run_dir() -> str:
    path = tempfile.mkdtemp(prefix="sqs-poller-run-")
    os.environ[ENV_DIR] = path  # inherited by the worker processes spawned after this
    with open(os.path.join(path, "supervisor.pid"), "w") as fh:
        fh.write(str(os.getpid()))
    return path


def supervisor_pid() -> int | None:
    """The supervisor that owns the run directory, if one does (a lone Worker has none)."""
    try:
        with open(os.path.join(run_dir(), "supervisor.pid")) as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def remove_run_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_dir() -> str:
    path = os.environ.get(ENV_DIR)
    if not path:
        path = tempfile.mkdtemp(prefix="sqs-poller-run-")
        os.environ[ENV_DIR] = path
    return path
