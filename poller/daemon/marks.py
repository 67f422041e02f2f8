"""Marks this host keeps on messages, shared by every worker process and kept across worker
restarts: one empty file a message, named by its id, in one folder a kind of mark (in the
supervisor's run directory, see rundir.py).
"""

from __future__ import annotations

import os
import re

from poller.daemon.rundir import run_dir

UNDELIVERABLE = "undeliverable"  # the DLQ refused even its bare copy: left to the redrive policy


class Marks:
    def __init__(self, root: str | None = None):
        self.root = os.path.join(root or run_dir(), "marks")

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

    def any(self, kind: str) -> bool:
        """Is any message marked so? One look at the folder: a batch with none needs no `has`."""
        return folder_has_files(os.path.join(self.root, kind))


def folder_has_files(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is not None
    except OSError:  # no such folder yet: nothing was ever marked
        return False
