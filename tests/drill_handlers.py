"""Handlers the fault drills run inside the real daemon (records go to $RECORD_FILE)."""

from __future__ import annotations

import time

from poller import Message, Poison
from tests.sample_handlers import record


def scripted(message: Message) -> None:
    """JSON body {"n": id, "sleep": s, "poison": bool}; records "start" and, on success, "end"."""
    payload = message.json()
    record(message, phase="start")
    time.sleep(float(payload.get("sleep", 0)))
    if payload.get("poison"):
        raise Poison("drill: poison message")
    record(message, phase="end")
