"""Handler styles behind one seam: `message`, `batch` and `lambda` (`[handler] style`).

The worker builds one Runner per process with `build_runner` and hands it the messages of one
call; every style answers with one result per message, in order: None (delete it) or the
exception a per-message handler would have raised (`Retry`, `Poison`, `Unavailable`, any
error), or `Released` (FIFO: an earlier message of its group failed in this call, so it goes
back to the queue unchanged).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from poller.errors import ConfigError, HandlerLoadError
from poller.handlers.lambda_event import ContextFactory, RecordBuilder
from poller.message import Message, Released

STYLES = ("message", "batch", "lambda")
_CALLS = {
    "message": ("handle(message)", 1),
    "batch": ("handle_batch(messages)", 1),
    "lambda": ("handler(event, context)", 2),
}

Results = list[BaseException | None]


class ReportedFailure(Exception):
    """A lambda-style handler named this message in its batchItemFailures."""


class BadResponse(Exception):
    """The handler's response breaks its style's rules, so the whole call failed."""


class Runner:
    """Calls the handler for a list of messages and returns one result per message.

    `per_call`: one call takes the whole list (batch, lambda); else one message a call.
    `exclusive`: one call at a time in this process, as in a Lambda execution environment.
    `is_async`: use `await call_async(...)` on the worker's event loop instead of `call(...)`.
    """

    style = ""
    per_call = True
    exclusive = False

    def __init__(self, fn: Callable[..., Any], *, is_async: bool, fifo: bool):
        self.fn = fn
        self.is_async = is_async
        self.fifo = fifo

    def call(self, messages: Sequence[Message]) -> Results:
        if self.is_async:
            raise TypeError(f"{self.fn!r} is async def: use await runner.call_async(messages)")
        try:
            results = self._call(messages)
        except Exception as exc:  # the whole call failed: every message gets what it raised
            results = [exc] * len(messages)
        return release_rest_of_groups(messages, results) if self.fifo else results

    async def call_async(self, messages: Sequence[Message]) -> Results:
        if not self.is_async:
            raise TypeError(f"{self.fn!r} is not async def: use runner.call(messages)")
        try:
            results = await self._call_async(messages)
        except Exception as exc:
            results = [exc] * len(messages)
        return release_rest_of_groups(messages, results) if self.fifo else results

    def _call(self, messages: Sequence[Message]) -> Results:
        raise NotImplementedError

    async def _call_async(self, messages: Sequence[Message]) -> Results:
        raise NotImplementedError


class MessageRunner(Runner):
    """`handle(message)`, one message at a time; in a FIFO group, nothing runs after a failure."""

    style = "message"
    per_call = False

    def _call(self, messages: Sequence[Message]) -> Results:
        results: Results = []
        failed: set[str | None] = set()
        for message in messages:
            if self.fifo and message.group_id in failed:
                results.append(Released(message.group_id))
                continue
            try:
                awaited(self.fn(message), self.fn)
                results.append(None)
            except Exception as exc:
                results.append(exc)
                failed.add(message.group_id)
        return results

    async def _call_async(self, messages: Sequence[Message]) -> Results:
        results: Results = []
        failed: set[str | None] = set()
        for message in messages:
            if self.fifo and message.group_id in failed:
                results.append(Released(message.group_id))
                continue
            try:
                await self.fn(message)
                results.append(None)
            except Exception as exc:
                results.append(exc)
                failed.add(message.group_id)
        return results


class BatchRunner(Runner):
    """`handle_batch(messages) -> {message_id: exception} | None`."""

    style = "batch"

    def _call(self, messages: Sequence[Message]) -> Results:
        return batch_results(messages, awaited(self.fn(list(messages)), self.fn))

    async def _call_async(self, messages: Sequence[Message]) -> Results:
        return batch_results(messages, await self.fn(list(messages)))


class LambdaRunner(Runner):
    """`handler(event, context)` with Lambda's SQS event and its partial-batch response rules."""

    style = "lambda"
    exclusive = True

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        is_async: bool,
        fifo: bool,
        records: RecordBuilder,
        contexts: ContextFactory,
    ):
        super().__init__(fn, is_async=is_async, fifo=fifo)
        self.records = records
        self.contexts = contexts
        self._lock = threading.Lock()  # module-level state in Lambda code is not thread-safe
        self._async_lock: asyncio.Lock | None = None

    def _call(self, messages: Sequence[Message]) -> Results:
        with self._lock:
            response = awaited(self.fn(self.records.event(messages), self.contexts.new_context()), self.fn)
        return lambda_results(messages, response)

    async def _call_async(self, messages: Sequence[Message]) -> Results:
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            response = await self.fn(self.records.event(messages), self.contexts.new_context())
        return lambda_results(messages, response)


def batch_results(messages: Sequence[Message], response: Any) -> Results:
    """A batch handler's mapping as per-message results; a bad mapping raises BadResponse."""
    results: Results = [None] * len(messages)
    if response is None:
        return results
    if not isinstance(response, Mapping):
        raise BadResponse(
            "handle_batch must return None or a mapping of message_id to exception, "
            f"got {type(response).__name__}"
        )
    where = _positions(messages)
    for message_id, error in response.items():
        if message_id not in where:
            raise BadResponse(f"handle_batch named message_id {message_id!r}, which is not in this batch")
        if not isinstance(error, BaseException):
            raise BadResponse(
                f"handle_batch mapped {message_id!r} to {error!r}; the value must be an exception "
                "(Retry, Poison, Unavailable or any error)"
            )
        for i in where[message_id]:
            results[i] = error
    return results


def lambda_results(messages: Sequence[Message], response: Any) -> Results:
    """Lambda's ReportBatchItemFailures rules: the named ids fail, the rest succeed.

    None, a response without batchItemFailures, or an empty list: all succeed. A response that is
    not a JSON object, or an item without a non-empty itemIdentifier of this batch: BadResponse.
    """
    results: Results = [None] * len(messages)
    if response is None:
        return results
    if not isinstance(response, dict):
        raise BadResponse(
            f"the handler returned {type(response).__name__} {_short(response)}; Lambda's SQS response is "
            'null or {"batchItemFailures": [{"itemIdentifier": messageId}, ...]}'
        )
    try:
        json.dumps(response)
    except (TypeError, ValueError) as exc:
        raise BadResponse(f"the handler's response is not JSON-serializable: {exc}") from None
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return results
    if not isinstance(failures, list):
        raise BadResponse(f"batchItemFailures must be a list, got {_short(failures)}")
    where = _positions(messages)
    for item in failures:
        if not isinstance(item, dict) or "itemIdentifier" not in item:
            raise BadResponse(f"batchItemFailures entry {_short(item)} has no itemIdentifier")
        identifier = item["itemIdentifier"]
        if not isinstance(identifier, str) or not identifier:
            raise BadResponse(f"batchItemFailures entry {_short(item)} has an empty or null itemIdentifier")
        if identifier not in where:
            raise BadResponse(f"batchItemFailures names {identifier!r}, not a messageId of this batch")
        for i in where[identifier]:
            results[i] = ReportedFailure(f"reported in batchItemFailures ({identifier})")
    return results


def release_rest_of_groups(messages: Sequence[Message], results: Results) -> Results:
    """FIFO: after the first failure in a group, the group's later messages are Released."""
    failed: set[str | None] = set()
    out: Results = []
    for message, result in zip(messages, results, strict=True):
        if message.group_id in failed:
            out.append(result if isinstance(result, Released) else Released(message.group_id))
            continue
        if result is not None:
            failed.add(message.group_id)
        out.append(result)
    return out


def build_runner(
    style: str,
    target: object,
    *,
    timeout: float,
    region: str,
    queue_url: str,
    options: Mapping[str, Any],
) -> Runner:
    """The Runner for `style` around `target` (a function or the handler class's instance).

    For the lambda style, `options` may set the context's `function_name`, `function_version`
    and `memory_limit_in_mb`. Raises HandlerLoadError when the target does not fit the style.
    """
    problem = check_signature(style, target)
    if problem:
        raise HandlerLoadError(problem)
    fn = resolve_callable(style, target)
    is_async = is_async_callable(fn)
    fifo = queue_url.endswith(".fifo")
    if style == "message":
        return MessageRunner(fn, is_async=is_async, fifo=fifo)
    if style == "batch":
        return BatchRunner(fn, is_async=is_async, fifo=fifo)
    contexts = ContextFactory(
        queue_url=queue_url,
        region=region,
        timeout=timeout,
        function_name=options.get("function_name"),
        function_version=options.get("function_version", "$LATEST"),
        memory_limit_in_mb=options.get("memory_limit_in_mb", 128),
    )
    records = RecordBuilder(queue_url, region)
    return LambdaRunner(fn, is_async=is_async, fifo=fifo, records=records, contexts=contexts)


def resolve_callable(style: str, target: object) -> Callable[..., Any]:
    """What the style calls: `.handle` / `.handle_batch` of an instance, else the target itself."""
    method = {"message": "handle", "batch": "handle_batch"}.get(style)
    if method and not inspect.isroutine(target) and callable(getattr(target, method, None)):
        return getattr(target, method)
    return target  # type: ignore[return-value]


def check_signature(style: str, target: object) -> str | None:
    """Why `target` cannot be called the way `style` calls it, or None when it can."""
    if style not in STYLES:
        raise ConfigError(f"handler.style = {style!r}: allowed: {', '.join(STYLES)}")
    call, count = _CALLS[style]
    if isinstance(target, type):
        return f"the {style} style calls {call}; the target is a class, which is not callable that way"
    fn = resolve_callable(style, target)
    only_handle = fn is target and not inspect.isroutine(target) and callable(getattr(target, "handle", None))
    if style == "batch" and only_handle:
        return f"the batch style calls handle_batch(messages); {_name(target)} has only handle(message)"
    if not callable(fn):
        return f"the {style} style calls {call}; {_name(target)} has no such method and is not callable"
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # not introspectable (a builtin): nothing to check
    try:
        signature.bind(*[None] * count)
    except TypeError:
        hint = ""
        if count == 1 and _binds(signature, 2):
            hint = ' (it takes (event, context): style = "lambda"?)'
        elif count == 2 and _binds(signature, 1):
            hint = ' (it takes one argument: style = "message" or "batch"?)'
        return f"the {style} style calls {call}; {_name(fn)}{signature} cannot be called that way{hint}"
    return None


def is_async_callable(fn: Any) -> bool:
    call = None if inspect.isroutine(fn) else inspect.getattr_static(type(fn), "__call__", None)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*[None] * count)
    except TypeError:
        return False
    return True


def _positions(messages: Sequence[Message]) -> dict[str, list[int]]:
    where: dict[str, list[int]] = {}
    for i, message in enumerate(messages):
        where.setdefault(message.message_id, []).append(i)
    return where


_threads = threading.local()  # each handler thread's own event loop, for awaitables returned


def awaited(result: Any, fn: Any) -> Any:
    """`result`, or, when a sync callable returned an awaitable (a decorator around an
    `async def`), what awaiting it gives: run to the end on this thread's own event loop, so
    the message is settled on what the coroutine did. Where no loop can run it (a loop already
    runs on this thread), raises TypeError naming it: the message fails, never deleted unrun."""
    if result is None or not inspect.isawaitable(result):
        return result
    loop = getattr(_threads, "loop", None)
    if loop is None:
        loop = _threads.loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_await(result))
    except RuntimeError as exc:
        if "running" not in str(exc):
            raise
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(f"{_name(fn)} returned {result!r}, which cannot be awaited here: {exc}") from None


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
