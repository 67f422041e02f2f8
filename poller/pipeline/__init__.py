"""The per-message pipeline: small steps around the handler, composed once per worker.

A step is an object with any of these methods (each optional, like dramatiq's middleware):

- ``before(message) -> Message``: runs before the handler, in step order, on the thread (or,
  for async handlers, the executor thread) that runs the message. Return the message the next
  step and the handler see (a copy with a new body, say). Raise ``Retry``, ``Poison``,
  ``Unavailable`` or any error to fail the message without running the handler; raise
  ``Skip(outcome)`` to settle it without running the handler (``"deleted"`` for an
  idempotent duplicate, ``"filtered"`` for a message no filter matched).
- ``after(message, error)``: runs after the handler (or after a failing ``before``), in
  reverse order, with the error the handler raised or None. Only the steps whose ``before``
  ran get their ``after``. It must not raise.
- ``settled(message, outcome)``: once the outcome is final: ``deleted`` (after SQS confirmed
  the delete, on the housekeeping thread), ``retried``, ``dead_lettered``, ``released``,
  ``filtered``. ``message`` is the message as received (the original body). It must not
  block: hand slow work (an S3 delete) to a thread of the step's own.
- ``blocks(message) -> bool``: may this step's ``before`` or ``after`` wait (I/O, a sleep) for
  this message? It must answer at once, without I/O. A step with ``before`` or ``after`` and no
  ``blocks`` is taken to block. For async handlers a message no step blocks on runs its steps
  on the event loop itself, without a hop to a thread and back (`Pipeline.blocks`).
- ``start()`` once the worker runs; ``close()`` at shutdown.

`compose(steps)` keeps only the methods each step defines, so a step that is off is not in
the chain at all and the hot path never asks "is this feature on?".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from poller.message import Message


class Pipeline:
    """The composed steps of one worker process."""

    def __init__(self, steps: Sequence[Any] = ()):
        self.steps = tuple(steps)
        self._before = tuple(s.before for s in self.steps if hasattr(s, "before"))
        self._pairs = tuple(
            (getattr(s, "before", None), getattr(s, "after", None))
            for s in self.steps
            if hasattr(s, "before") or hasattr(s, "after")
        )
        self._settled = tuple(s.settled for s in self.steps if hasattr(s, "settled"))
        self.empty = not self._pairs
        hooked = [s for s in self.steps if hasattr(s, "before") or hasattr(s, "after")]
        self._always_blocks = any(not hasattr(s, "blocks") for s in hooked)
        self._blocks = tuple(s.blocks for s in hooked if hasattr(s, "blocks"))

    @property
    def names(self) -> list[str]:
        return [getattr(s, "name", None) or type(s).__name__ for s in self.steps]

    def blocks(self, message: Message) -> bool:
        """May some step's ``before`` or ``after`` wait for this message? Cheap, no I/O."""
        return self._always_blocks or any(blocks(message) for blocks in self._blocks)

    def prepare(
        self, message: Message
    ) -> tuple[Message, list[Callable[[Message, BaseException | None], None]]]:
        """Run every ``before``. Returns the handler's message and the ``after`` hooks owed.

        On an exception the hooks owed so far have already been run with that exception.
        """
        owed: list[Callable[[Message, BaseException | None], None]] = []
        try:
            for before, after in self._pairs:
                if before is not None:
                    message = before(message)
                if after is not None:
                    owed.append(after)
        except BaseException as exc:
            finish(owed, message, exc)
            raise
        return message, owed

    def settled(self, message: Message, outcome: str) -> None:
        for hook in self._settled:
            hook(message, outcome)

    def start(self) -> None:
        for step in self.steps:
            if hasattr(step, "start"):
                step.start()

    def close(self) -> None:
        for step in reversed(self.steps):
            if hasattr(step, "close"):
                step.close()


def finish(
    owed: Sequence[Callable[[Message, BaseException | None], None]],
    message: Message,
    error: BaseException | None,
) -> None:
    """Run the ``after`` hooks owed, innermost first."""
    for after in reversed(owed):
        after(message, error)


def run_sync(pipeline: Pipeline, handle: Callable[[Message], Any], message: Message) -> None:
    """The whole pipeline around a synchronous handler, for one message."""
    if pipeline.empty:
        handle(message)
        return
    prepared, owed = pipeline.prepare(message)
    try:
        handle(prepared)
    except BaseException as exc:
        finish(owed, prepared, exc)
        raise
    finish(owed, prepared, None)
