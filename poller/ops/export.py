"""`dlq export`: stream a DLQ to a JSONL file. Without --delete every message stays on the DLQ
(hidden while the export runs, released at the end); with --delete each is deleted only after
its line is flushed and fsynced, so a kill or a full disk never loses one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from poller.errors import ConfigError, PollerError, SqsError
from poller.message import Message
from poller.ops.dlq import Hold, Polling, Receiver, Stop, never, to_record
from poller.sqs import MAX_BATCH, Sqs

SYNC_EVERY = 100  # records between fsyncs (and, with --delete, between delete rounds)


@dataclass
class ExportSummary:
    exported: int = 0
    deleted: int = 0
    delete_failed: int = 0
    released: int = 0
    ended: str = ""
    interrupted: bool = False


def export(
    sqs: Sqs,
    url: str,
    out: Path,
    delete: bool = False,
    polling: Polling = Polling(),
    stop: Stop = never,
    progress: Callable[[ExportSummary], None] = lambda s: None,
    resolve: Callable[[Message], Message] | None = None,
) -> ExportSummary:
    """Stream every message to JSONL. Without `delete` they stay hidden until the end and are then
    released; with `delete` each is deleted only after its line is flushed and fsynced. `resolve`
    inlines S3 payloads (the S3 object is left where it is)."""
    fh = create_export_file(out)
    summary = ExportSummary()
    hold = Hold(sqs, url, polling.visibility)
    unsynced: list[Message] = []
    synced = 0
    try:
        with fh:

            def sync() -> None:
                nonlocal synced
                fh.flush()
                os.fsync(fh.fileno())
                synced += len(unsynced)
                if delete:
                    deleted, failed = hold.delete([m.message_id for m in unsynced])
                    summary.deleted += len(deleted)
                    summary.delete_failed += len(failed)
                unsynced.clear()

            receiver = Receiver(sqs, url, hold, polling, lambda: MAX_BATCH, stop)
            try:
                for batch in receiver:
                    for message in batch:
                        record = to_record(message)
                        if resolve is not None and "payload" in record:
                            inline = to_record(resolve(message))
                            record["body"] = inline["body"]
                            record["message_attributes"] = inline["message_attributes"]
                            record["payload"]["resolved"] = True
                        fh.write(json.dumps(record, separators=(",", ":")) + "\n")
                    unsynced.extend(batch)
                    summary.exported += len(batch)
                    if len(unsynced) >= SYNC_EVERY:
                        sync()
                    progress(summary)
            except SqsError as exc:
                if "OverLimit" not in exc.code:
                    raise
                receiver.ended = "in_flight_limit"  # SQS caps hidden messages; export the rest later
            sync()
            summary.ended = receiver.ended
            summary.interrupted = receiver.ended == "stopped"
    except OSError as exc:  # the file: SQS and S3 errors arrive as their own types
        deleted = f", {summary.deleted} of them deleted from the DLQ" if delete else ""
        raise PollerError(
            f"writing {out} failed: {exc.strerror or exc}. {synced} message(s) are safely in the "
            f"file{deleted}; every other one stays on the DLQ (the file may end in a partial line)"
        ) from None
    finally:
        summary.released = len(hold)
        hold.release_all()
    return summary


def create_export_file(out: Path) -> TextIO:
    """A new file for the export, before anything is received: a path that cannot be created
    is a usage error (exit 2) with nothing touched on the DLQ."""
    try:
        return open(out, "x", encoding="utf-8")
    except FileExistsError:
        raise ConfigError(f"{out} exists: choose a new file (an export is never overwritten)") from None
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the file: {exc.strerror or exc}") from None
