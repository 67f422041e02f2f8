"""The visibility heartbeat: messages that are held get their visibility extended, ten a
request, shortly before SQS would make them visible again. The worker's housekeeper and the
DLQ tools' hold both beat with it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from poller.daemon.inflight import InFlight
from poller.errors import SqsError
from poller.sqs import Sqs, chunks

IDLE_TICK = 1.0


class Heartbeat:
    def __init__(
        self,
        sqs: Sqs,
        url: str,
        visibility: int,
        on_refused: Callable[[InFlight, str], None],
        log: Any = None,
    ):
        self.sqs = sqs
        self.url = url
        self.visibility = visibility
        self.margin = max(1.0, min(10.0, visibility / 3))
        self.on_refused = on_refused  # SQS no longer knows the receipt (another receive has it)
        self.log = log

    def extend(self, entries: Iterable[InFlight]) -> float:
        """Extend every unsettled entry within the margin of reappearing; returns when to beat next."""
        groups, wake = self.due(entries)
        for group in groups:
            wake = min(wake, self.extend_group(group))
        return wake

    def due(self, entries: Iterable[InFlight]) -> tuple[list[list[InFlight]], float]:
        """The unsettled entries within the margin of reappearing, ten a group, and when the
        next of the others will be: a look at the clock, no call."""
        now = time.monotonic()
        wake = now + IDLE_TICK
        due = []
        for entry in entries:
            if entry.settled:
                continue
            if entry.visible_until - now <= self.margin:
                due.append(entry)
            else:
                wake = min(wake, entry.visible_until - self.margin)
        return [list(group) for group in chunks(due)], wake

    def extend_group(self, group: list[InFlight]) -> float:
        group = [e for e in group if not e.settled]  # settled meanwhile: never extended after
        if not group:
            return time.monotonic() + IDLE_TICK
        asked = time.monotonic()
        wake = asked + IDLE_TICK
        changes = [(str(n), e.message.receipt_handle, self.visibility) for n, e in enumerate(group)]
        try:
            failures = self.sqs.change_visibility_batch(self.url, changes)
        except SqsError as exc:
            if self.log is not None:
                self.log.warning("visibility_extend_failed", count=len(group), error=str(exc))
            return wake  # tried again next beat; one that expires is received again later
        failed = {f.id: f for f in failures}
        for n, entry in enumerate(group):
            failure = failed.get(str(n))
            if failure is None:
                entry.visible_until = asked + self.visibility
                wake = min(wake, entry.visible_until - self.margin)
            elif failure.receipt_invalid:
                self.on_refused(entry, failure.code)
        return wake
