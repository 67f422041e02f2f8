"""Hypothesis drives one in-process Worker against moto's server: whatever the bodies, attributes,
receive counts and handler outcomes, the worker never crashes and every message ends deleted,
back on the queue (retried) or in the DLQ, with its body and attributes intact."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from poller.configload import build_config
from poller.daemon.metrics import Metrics
from poller.daemon.worker import Worker
from poller.dev.localsqs import create_queue_pair
from poller.failure import FAILURE_ATTRIBUTE
from poller.handlers.load import LoadedHandler
from poller.message import Message, Poison, Retry
from tests.conftest import queue_total

CASE_ATTRIBUTE = "fuzz.case"


class HandlerBaseException(BaseException):
    """Not an Exception: handler code that escapes `except Exception`."""


# SQS accepts these characters in bodies and string attributes (XML 1.0, no surrogates).
sqs_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\ufffe\uffff",
        min_codepoint=0x20,
    )
    | st.sampled_from("\t\n\r"),
    max_size=300,
)
bodies = st.one_of(
    sqs_text,
    st.just(""),
    st.integers(min_value=10_000, max_value=200_000).map(lambda n: "x" * n),
)
attribute_names = st.from_regex(r"\A[a-zA-Z0-9_-]{1,20}\Z").filter(
    lambda n: not n.lower().startswith(("aws", "amazon"))
)
attribute_values = st.one_of(
    sqs_text.filter(bool).map(lambda s: {"DataType": "String", "StringValue": s}),
    st.integers(-(10**20), 10**20).map(lambda n: {"DataType": "Number", "StringValue": str(n)}),
    st.binary(min_size=1, max_size=100).map(lambda b: {"DataType": "Binary", "BinaryValue": b}),
)
outcomes = st.one_of(
    st.just(("return",)),
    st.just(("poison",)),
    st.tuples(st.just("retry"), st.one_of(st.none(), st.sampled_from([0, 1, 30, 600]))),
    st.sampled_from([("error", ValueError), ("error", KeyError), ("error", HandlerBaseException)]),
    st.just(("error", SystemExit)),
)


@dataclass
class Case:
    body: str
    attributes: dict[str, dict[str, Any]]
    outcome: tuple


cases = st.builds(
    Case,
    body=bodies,
    attributes=st.dictionaries(attribute_names, attribute_values, max_size=9),
    outcome=outcomes,
)


def act(outcome: tuple) -> None:
    kind = outcome[0]
    if kind == "return":
        return
    if kind == "poison":
        raise Poison("fuzz: poison")
    if kind == "retry":
        raise Retry(delay=outcome[1])
    raise outcome[1]("fuzz: handler failed")


def make_worker(local_sqs: Any, url: str, dlq: str, max_receives: int, handler: LoadedHandler) -> Worker:
    raw = {
        "queue": {
            "url": url,
            "dlq_url": dlq,
            "endpoint_url": local_sqs.endpoint_url,
            "region": "us-east-1",
            "wait_time_seconds": 0,
            "visibility_timeout": 30,
            "max_receives": max_receives,
        },
        "retry": {"backoff_base": 60.0, "backoff_max": 600},
        "workers": {"processes": 1, "concurrency": 4, "shutdown_grace": 10},
        "handler": {"target": "tests.sample_handlers:noop", "timeout": 30},
        "metrics": {"listen": ""},
        "logging": {"level": "warning"},
    }
    return Worker(build_config(raw, {}), handler=handler, metrics=Metrics(CollectorRegistry()))


def receive_every(sqs: Any, url: str, count: int) -> list[dict[str, Any]]:
    """Receive (hide) all `count` messages once; returns them."""
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while len(seen) < count and time.monotonic() < deadline:
        for m in sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", []):
            seen[m["MessageId"]] = m
    return list(seen.values())


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    batch=st.lists(cases, min_size=1, max_size=6),
    earlier_receives=st.integers(0, 3),
    max_receives=st.integers(1, 4),
)
def test_worker_settles_every_message(local_sqs, sqs, batch, earlier_receives, max_receives):
    # GIVEN messages with arbitrary bodies and attributes, already received a few times
    url, dlq = create_queue_pair(sqs, f"fz-{uuid.uuid4().hex[:10]}", max_receive_count=50)
    for n, case in enumerate(batch):
        attributes = {**case.attributes, CASE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(n)}}
        sqs.send_message(QueueUrl=url, MessageBody=case.body, MessageAttributes=attributes)
    for _ in range(earlier_receives):
        received = receive_every(sqs, url, len(batch))
        for m in received:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)

    # WHEN a worker runs a handler that returns, retries, poisons or raises anything
    calls: list[tuple[int, int]] = []  # (case, receive_count), in order

    def handle(message: Message) -> None:
        n = int(message.message_attributes[CASE_ATTRIBUTE]["StringValue"])
        calls.append((n, message.receive_count))
        act(batch[n].outcome)

    worker = make_worker(local_sqs, url, dlq, max_receives, LoadedHandler(handle, lambda: None, "fuzz"))
    worker.initialize()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        worker.loop()  # never raises, whatever the handler did
        if {n for n, _ in calls} == set(range(len(batch))) and not len(worker.held):
            break
    worker.begin_stop("test over")
    assert worker.shutdown() == 0

    # THEN each message's last outcome decided where it is: deleted, DLQ, or back on the queue
    assert {n for n, _ in calls} == set(range(len(batch)))
    last: dict[int, tuple[tuple, int]] = {}
    for n, receive_count in calls:
        last[n] = (batch[n].outcome, receive_count)
    expect_dlq = {
        n
        for n, (outcome, receive_count) in last.items()
        if outcome[0] == "poison" or (outcome[0] != "return" and receive_count >= max_receives)
    }
    expect_queue = {n for n, (outcome, _) in last.items() if outcome[0] != "return"} - expect_dlq
    first: dict[int, int] = {}
    for n, receive_count in calls:
        first.setdefault(n, receive_count)
    assert set(first.values()) == {earlier_receives + 1}

    in_dlq = receive_every(sqs, dlq, len(expect_dlq))
    dlq_cases = {int(m["MessageAttributes"][CASE_ATTRIBUTE]["StringValue"]): m for m in in_dlq}
    assert set(dlq_cases) == expect_dlq
    assert queue_total(sqs, dlq) == len(expect_dlq)  # each moved once
    assert queue_total(sqs, url) == len(expect_queue)
    for n, m in dlq_cases.items():
        assert m["Body"] == batch[n].body
        original = {
            k: v for k, v in m["MessageAttributes"].items() if k not in (CASE_ATTRIBUTE, FAILURE_ATTRIBUTE)
        }
        assert original == batch[n].attributes
        assert (FAILURE_ATTRIBUTE in m["MessageAttributes"]) == (len(batch[n].attributes) + 1 < 10)
