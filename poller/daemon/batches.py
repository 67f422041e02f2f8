"""Gathering batches for the batch and lambda styles: messages from several receives fill one
call of up to `batch_size`, for at most `batch_window` seconds, and never beyond what a worker
may hold (`concurrency`): a batch also goes once no slot is left to fill it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from poller.daemon.inflight import InFlight


class Batches:
    def __init__(
        self,
        size: int,
        window: float,
        concurrency: int,
        held: Callable[[], int],
        submit: Callable[[Any], None],
    ):
        self.size = size
        self.window = window
        self.concurrency = concurrency
        self.held = held  # how many the worker holds now
        self.submit = submit  # hands one batch to the executor
        self.pending: list[InFlight] = []
        self.until = 0.0  # when the window of the batch being gathered ends

    def __bool__(self) -> bool:
        return bool(self.pending)

    def add(self, entries: list[InFlight]) -> None:
        if not self.pending:
            self.until = time.monotonic() + self.window
        self.pending.extend(entries)
        while len(self.pending) >= self.size:
            self.flush(self.size)
        if self.pending and self.due():
            self.flush()

    def due(self) -> bool:
        """The batch goes when it is full, its window has passed, or no slot is left to fill it."""
        return (
            len(self.pending) >= self.size
            or time.monotonic() >= self.until
            or self.held() >= self.concurrency
        )

    def flush(self, size: int | None = None) -> None:
        size = size or len(self.pending)
        batch, self.pending = self.pending[:size], self.pending[size:]
        if self.pending:
            self.until = time.monotonic() + self.window
        self.submit(batch)

    def wait_left(self, wait: int) -> int:
        """A long poll's wait, cut so it never outlasts the window of the batch being gathered."""
        if not self.pending:
            return wait
        return min(wait, max(0, math.ceil(self.until - time.monotonic())))

    def take_all(self) -> list[InFlight]:
        """What never started (at a stop): for the caller to release."""
        pending, self.pending = self.pending, []
        return pending
