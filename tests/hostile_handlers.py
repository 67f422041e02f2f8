"""Hostile handlers for the crash-proofing tests: they kill their own process, exit, leak, or
poison messages near SQS's size limit. Records go to $RECORD_FILE, one short JSON line each
(never the body: some bodies are a mebibyte)."""

from __future__ import annotations

import json
import os
import signal
import time

from poller import Message, Poison

_LEAKED: list[bytes] = []


def record(message: Message, **extra: object) -> None:
    try:
        n = message.json().get("n")
    except ValueError:
        n = None
    line = json.dumps(
        {
            "id": message.message_id,
            "n": n,
            "receive_count": message.receive_count,
            "pid": os.getpid(),
            "t": time.time(),
            **extra,
        }
    )
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def scripted(message: Message) -> None:
    """JSON body {"n": id, "sleep": s, "kill": bool, "exit": code, "leak_mb": m, "poison": bool}.

    Records "start", then: "kill" SIGKILLs this worker process, "exit" calls os._exit(code),
    "leak_mb" keeps that many MiB alive for good, "poison" raises Poison; else records "end"."""
    payload = message.json()
    record(message, phase="start")
    time.sleep(float(payload.get("sleep", 0)))
    if payload.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if "exit" in payload:
        os._exit(int(payload["exit"]))
    if payload.get("leak_mb"):
        _LEAKED.append(b"\x01" * int(float(payload["leak_mb"]) * 1024 * 1024))  # touched: counts in RSS
    if payload.get("poison"):
        raise Poison("hostile: poison message")
    record(message, phase="end")


def poison_any(message: Message) -> None:
    """Every message is poison (whatever its body); records each run."""
    record(message, phase="start", size=len(message.body.encode()))
    raise Poison("hostile: poison message")
