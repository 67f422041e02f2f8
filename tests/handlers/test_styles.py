"""Handler styles behind build_runner: message and batch handlers, sync and async, FIFO groups,
and the signature check `sqs-poller check` reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from poller.errors import ConfigError, HandlerLoadError
from poller.handlers.load import load_handler, load_target
from poller.handlers.styles import BadResponse, build_runner, check_signature
from poller.message import Message, Poison, Released, Retry, Unavailable
from tests.messages import message

URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"
FIFO_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo"


def runner(style: str, target: Any, url: str = URL) -> Any:
    return build_runner(style, target, timeout=30, region="eu-west-1", queue_url=url, options={})


def batch(*ids: str, url: str = URL, group: str | None = None) -> list[Message]:
    return [message(f"body-{i}", message_id=i, queue_url=url, group_id=group) for i in ids]


# --- message style -------------------------------------------------------------------------------


def test_message_style_function_results_per_message() -> None:
    # GIVEN a per-message function that fails some messages in each of the contract's ways
    outcomes = {
        "a": None,
        "b": Retry(delay=5),
        "c": Poison("bad"),
        "d": Unavailable("db down"),
        "e": KeyError("x"),
    }
    seen: list[str] = []

    def handle(m: Message) -> None:
        seen.append(m.message_id)
        if outcomes[m.message_id] is not None:
            raise outcomes[m.message_id]

    # WHEN the message style runs them
    r = runner("message", handle)
    results = r.call(batch(*outcomes))

    # THEN each message gets None or exactly what it raised; it is one message a call
    assert results == list(outcomes.values()) and seen == list(outcomes)
    assert (r.per_call, r.exclusive, r.is_async) == (False, False, False)


def test_message_style_class_instance_and_return_values_mean_nothing() -> None:
    class Handler:
        def __init__(self, options: dict[str, Any]) -> None:
            self.got: list[str] = []

        def handle(self, m: Message) -> bool:
            self.got.append(m.body)
            return False  # a return value is not a failure

    h = Handler({})
    assert runner("message", h).call(batch("a")) == [None] and h.got == ["body-a"]


def test_message_style_fifo_runs_nothing_of_a_group_after_a_failure() -> None:
    # GIVEN a FIFO call with groups A and B, where A's 2nd message fails
    ran: list[str] = []

    def handle(m: Message) -> None:
        ran.append(m.message_id)
        if m.message_id == "a2":
            raise RuntimeError("boom")

    messages = batch("a1", "a2", url=FIFO_URL, group="A") + batch("b1", url=FIFO_URL, group="B")
    messages.insert(2, message("a3", message_id="a3", queue_url=FIFO_URL, group_id="A"))

    # WHEN the message style runs them
    results = runner("message", handle, FIFO_URL).call(messages)

    # THEN a3 never ran and is released; group B went on
    assert ran == ["a1", "a2", "b1"]
    assert results[0] is None and isinstance(results[1], RuntimeError)
    assert isinstance(results[2], Released) and results[3] is None


def test_async_message_handler() -> None:
    # GIVEN an async per-message handler
    async def handle(m: Message) -> None:
        await asyncio.sleep(0)
        if m.message_id == "b":
            raise Retry(delay=1)

    r = runner("message", handle)

    # WHEN it is awaited THEN results are as for a sync handler; call() refuses it
    results = asyncio.run(r.call_async(batch("a", "b")))
    assert r.is_async and results[0] is None and isinstance(results[1], Retry)
    with pytest.raises(TypeError, match="async def"):
        r.call(batch("a"))


def test_a_coroutine_a_sync_handler_returns_is_awaited_and_its_outcome_counts() -> None:
    # GIVEN a sync handler (a decorator around an async def, say) that returns a coroutine
    ran: list[str] = []

    async def work(m: Message) -> None:
        ran.append(m.message_id)
        if m.message_id == "b":
            raise RuntimeError("failed inside the coroutine")

    def handle(m: Message) -> Any:
        return work(m)

    # WHEN the message style calls it
    results = runner("message", handle).call(batch("a", "b"))
    # THEN both coroutines ran; the one that raised failed its message, the other succeeded
    assert ran == ["a", "b"]
    assert results[0] is None and isinstance(results[1], RuntimeError)


def test_an_awaitable_that_cannot_be_awaited_fails_its_message_naming_it() -> None:
    # GIVEN a handler returning a coroutine, called where an event loop already runs
    async def work(m: Message) -> None:
        pass

    def handle(m: Message) -> Any:
        return work(m)

    async def call_inside_a_loop() -> Any:
        return runner("message", handle).call(batch("a"))

    # WHEN it is called there, THEN its message fails with an error naming the coroutine
    (result,) = asyncio.run(call_inside_a_loop())
    assert isinstance(result, TypeError) and "coroutine" in str(result) and "work" in str(result)


# --- batch style ---------------------------------------------------------------------------------


class BulkWriter:
    """A batch handler as DESIGN.md describes: one round trip, failures named by message_id."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.calls: list[list[str]] = []

    def handle_batch(self, messages: list[Message]) -> dict[str, BaseException]:
        self.calls.append([m.message_id for m in messages])
        return {"b": Retry(delay=30), "d": Poison("schema"), "e": Unavailable("db")}


def test_batch_style_maps_failures_to_their_messages() -> None:
    # GIVEN a batch handler instance that fails b, d, e in different ways
    writer = BulkWriter({})
    r = runner("batch", writer)

    # WHEN the batch style runs five messages
    results = r.call(batch("a", "b", "c", "d", "e"))

    # THEN one call took them all; the named ones carry their exception, the rest are deleted
    assert writer.calls == [["a", "b", "c", "d", "e"]]
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Retry) and results[1].delay == 30
    assert isinstance(results[3], Poison) and isinstance(results[4], Unavailable)
    assert (r.per_call, r.exclusive) == (True, False)


@pytest.mark.parametrize(
    ("response", "says"),
    [
        ({"zzz": RuntimeError("x")}, "'zzz', which is not in this batch"),
        ({"a": "failed"}, "must be an exception"),
        (["a"], "must return None or a mapping"),
    ],
)
def test_batch_style_bad_mapping_fails_the_whole_batch(response: Any, says: str) -> None:
    results = runner("batch", lambda messages: response).call(batch("a", "b"))
    assert all(isinstance(r, BadResponse) and says in str(r) for r in results)


def test_batch_style_none_deletes_all_and_raising_fails_all() -> None:
    assert runner("batch", lambda messages: None).call(batch("a", "b")) == [None, None]

    def explode(messages: list[Message]) -> None:
        raise Unavailable("warehouse down")

    results = runner("batch", explode).call(batch("a", "b"))
    assert [type(r) for r in results] == [Unavailable, Unavailable]


def test_batch_style_fifo_releases_the_rest_of_a_failed_group() -> None:
    # GIVEN a FIFO batch where the handler fails a1 but reports a2 done
    messages = batch("a1", "a2", url=FIFO_URL, group="A") + batch("b1", "b2", url=FIFO_URL, group="B")

    # WHEN the batch style runs it
    results = runner("batch", lambda ms: {"a1": RuntimeError("x")}, FIFO_URL).call(messages)

    # THEN a2 is released, not deleted; group B is deleted
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], Released)
    assert results[2:] == [None, None]


def test_batch_style_fifo_whole_failure_fails_the_first_of_each_group_and_releases_the_rest() -> None:
    def explode(messages: list[Message]) -> None:
        raise RuntimeError("down")

    messages = batch("a1", "a2", url=FIFO_URL, group="A") + batch("b1", "b2", url=FIFO_URL, group="B")
    results = runner("batch", explode, FIFO_URL).call(messages)
    assert [type(r) for r in results] == [RuntimeError, Released, RuntimeError, Released]


def test_async_batch_handler() -> None:
    class AsyncWriter:
        async def handle_batch(self, messages: list[Message]) -> dict[str, BaseException]:
            await asyncio.sleep(0)
            return {messages[-1].message_id: Retry()}

    r = runner("batch", AsyncWriter())
    results = asyncio.run(r.call_async(batch("a", "b")))
    assert r.is_async and results[0] is None and isinstance(results[1], Retry)


# --- loading and signatures ----------------------------------------------------------------------


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    pass


def handle_batch(messages: list[Message]) -> None:
    pass


def handle(message: Message) -> None:
    pass


class OnlyHandle:
    def __init__(self, options: dict[str, Any]) -> None:
        pass

    def handle(self, message: Message) -> None:
        pass


@pytest.mark.parametrize(
    ("style", "target", "says"),
    [
        ("message", lambda_handler, 'style = "lambda"?'),
        ("batch", lambda_handler, 'style = "lambda"?'),
        ("lambda", handle, 'style = "message" or "batch"?'),
        ("batch", OnlyHandle({}), "has only handle(message)"),
        ("lambda", OnlyHandle, "is a class"),
        ("message", object(), "has no such method and is not callable"),
    ],
)
def test_check_signature_says_why_a_target_does_not_fit(style: str, target: Any, says: str) -> None:
    problem = check_signature(style, target)
    assert problem is not None and says in problem
    with pytest.raises(HandlerLoadError, match="calls"):
        runner(style, target)


@pytest.mark.parametrize(
    ("style", "target"),
    [
        ("message", handle),
        ("message", OnlyHandle({})),
        ("batch", handle_batch),
        ("batch", BulkWriter({})),
        ("lambda", lambda_handler),
        ("lambda", lambda event, context=None: None),
    ],
)
def test_check_signature_accepts_fitting_targets(style: str, target: Any) -> None:
    assert check_signature(style, target) is None


def test_unknown_style_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="handler.style = 'sns'"):
        check_signature("sns", handle)


def test_load_target_constructs_classes_for_any_style_and_load_handler_still_works() -> None:
    # GIVEN targets named as in handler.target
    writer = load_target("tests.handlers.test_styles:BulkWriter", {"x": 1})
    function = load_target("examples.lambda_powertools.orders:lambda_handler", {})

    # THEN a class is constructed (its handle_batch fits the batch style); a function is as is
    assert writer.is_instance and check_signature("batch", writer.obj) is None
    assert not function.is_instance and check_signature("lambda", function.obj) is None
    assert (
        load_handler("tests.handlers.test_styles:OnlyHandle", {}).name
        == "tests.handlers.test_styles:OnlyHandle"
    )
    with pytest.raises(HandlerLoadError, match="no handle"):
        load_handler("tests.handlers.test_styles:BulkWriter", {})


def test_callable_objects_with_async_call_are_awaited() -> None:
    # GIVEN a lambda target that is an object with an inherited async __call__
    class Base:
        async def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    class Function(Base):
        pass

    r = runner("lambda", Function())

    # WHEN it is awaited THEN its response is applied
    (result,) = asyncio.run(r.call_async(batch("a")))
    assert r.is_async and type(result).__name__ == "ReportedFailure"
