"""Spot reclaim: watch IMDSv2 for an interruption notice or a rebalance recommendation and
give the supervisor a drain deadline, so the instance drains exactly as on SIGTERM.

Both paths answer 404 until EC2 has something to say. An interruption notice names the
moment the instance is stopped or terminated (about two minutes ahead); a rebalance
recommendation names no such moment, so the drain gets `rebalance_drain_seconds`.
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from poller.daemon.lifecycle import Imds

INTERRUPTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
POLL_SECONDS = 5.0
# An interruption notice comes two minutes ahead; a drain that fits one fits a rebalance.
REBALANCE_DRAIN_SECONDS = 120.0
# Deletes and the lifecycle call must land before EC2 takes the instance.
DEADLINE_MARGIN_SECONDS = 10.0


@dataclass(frozen=True)
class SpotNotice:
    kind: str  # "interruption" or "rebalance"
    action: str  # terminate | stop | hibernate (interruption), rebalance
    deadline: float  # wall clock (epoch seconds) by which the drain must be over


def parse_timestamp(value: str) -> float:
    """IMDS writes UTC instants as 2024-05-01T08:22:00Z."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse_notice(kind: str, body: str, now: float, rebalance_seconds: float, margin: float) -> SpotNotice:
    """One IMDS document -> the notice and its drain deadline (epoch seconds)."""
    document = json.loads(body)
    if kind == "interruption":
        deadline = parse_timestamp(document["time"]) - margin
        return SpotNotice(kind, str(document.get("action", "terminate")), max(now, deadline))
    return SpotNotice(kind, "rebalance", now + rebalance_seconds)


class SpotWatcher:
    """Polls both IMDS paths at most every poll_seconds; the first notice sticks."""

    def __init__(
        self,
        imds: Imds,
        log: Any,
        poll_seconds: float = POLL_SECONDS,
        rebalance_drain_seconds: float = REBALANCE_DRAIN_SECONDS,
        margin_seconds: float = DEADLINE_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.imds = imds
        self.log = log
        self.poll_seconds = poll_seconds
        self.rebalance_drain_seconds = rebalance_drain_seconds
        self.margin_seconds = margin_seconds
        self.clock = clock
        self.monotonic = monotonic
        self.notice: SpotNotice | None = None
        self._next_poll = 0.0
        self._errors = 0

    def poll_notice(self) -> SpotNotice | None:
        """The notice, once IMDS has one; asks IMDS at most every poll_seconds."""
        if self.notice is not None or self.monotonic() < self._next_poll:
            return self.notice
        self._next_poll = self.monotonic() + self.poll_seconds
        try:
            notices = [
                self._read_notice("interruption", INTERRUPTION_PATH),
                self._read_notice("rebalance", REBALANCE_PATH),
            ]
            self._errors = 0
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            self._errors += 1
            if self._errors in (1, 10) or self._errors % 100 == 0:
                self.log.warning("spot_notice_unavailable", error=str(exc), failures=self._errors)
            return None
        found = [notice for notice in notices if notice is not None]
        if found:
            # Both at once: the interruption's fixed moment is the binding one.
            self.notice = min(found, key=lambda notice: notice.deadline)
            self.log.warning(
                "spot_notice_received",
                kind=self.notice.kind,
                action=self.notice.action,
                drain_seconds=round(self.notice.deadline - self.clock(), 1),
            )
        return self.notice

    def drain_deadline(self) -> float | None:
        """time.monotonic() value by which the drain must be over, once a notice exists."""
        notice = self.poll_notice()
        if notice is None:
            return None
        return self.monotonic() + max(0.0, notice.deadline - self.clock())

    def _read_notice(self, kind: str, path: str) -> SpotNotice | None:
        body = self.imds.get_optional(path)
        if body is None:
            return None
        return parse_notice(kind, body, self.clock(), self.rebalance_drain_seconds, self.margin_seconds)
