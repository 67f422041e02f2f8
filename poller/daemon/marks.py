"""Marks this host keeps on messages, shared by every worker process and kept across worker
restarts: one empty file a message, named by its id, in one folder a kind of mark.

The supervisor owns the folder (`prepare_marks_dir`, in $SQS_POLLER_MARKS_DIR, removed when it
stops); a worker started without one (tests, a lone Worker) gets a private folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

ENV_DIR = "SQS_POLLER_MARKS_DIR"
UNDELIVERABLE = "undeliverable"  # the DLQ refused even its bare copy: left to the redrive policy


def prepare_marks_dir() -> str:
    path = tempfile.mkdtemp(prefix="sqs-poller-marks-")
    os.environ[ENV_DIR] = path  # inherited by the worker processes spawned after this
    return path


def remove_marks_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Marks:
    def __init__(self, root: str | None = None):
        self.root = root or os.environ.get(ENV_DIR) or tempfile.mkdtemp(prefix="sqs-poller-marks-")

    def _path(self, kind: str, message_id: str) -> str:
        return os.path.join(self.root, kind, re.sub(r"[^\w.-]", "_", message_id))

    def add(self, kind: str, message_id: str) -> bool:
        """Mark a message; True if this call made the mark (so only one process reports it)."""
        path = self._path(kind, message_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        return True

    def has(self, kind: str, message_id: str) -> bool:
        return os.path.exists(self._path(kind, message_id))
