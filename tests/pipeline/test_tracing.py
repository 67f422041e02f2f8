"""Tracing: one consumer span per message in the producer's trace (from `traceparent` or
`AWSTraceHeader`), the outcome on the span, and trace ids on the handler's log lines."""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from poller.daemon.log import configure_logging
from poller.message import Message, Poison
from poller.pipeline import Pipeline, run_sync
from poller.pipeline.tracing import SendTracing, Tracing, inject_traceparent
from tests.messages import message

XRAY_TRACE = "5759e988bd862e3fe1be46a994272793"
XRAY_PARENT = "53995c3f42cd8ad8"
XRAY_HEADER = f"Root=1-{XRAY_TRACE[:8]}-{XRAY_TRACE[8:]};Parent={XRAY_PARENT};Sampled=1"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exported: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The JSON log lines written so far, as the daemon writes them to its stdout."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("debug", "json")

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]

    yield read
    structlog.contextvars.clear_contextvars()


def handle_and_log(message: Message) -> None:
    structlog.get_logger("handler").info("handled", message_id=message.message_id)


def consumer_spans(exported: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exported.get_finished_spans() if s.kind == trace.SpanKind.CONSUMER]


def hex_trace(span: Any) -> str:
    return trace.format_trace_id(span.context.trace_id)


def run(step: Tracing, msg: Message, outcome: str = "deleted", handler: Any = handle_and_log) -> None:
    """What the worker does: the pipeline around the handler, then the settlement."""
    try:
        run_sync(Pipeline([step]), handler, msg)
    except Exception:
        pass  # the outcome below is what the worker decided
    step.settled(msg, outcome)
    structlog.contextvars.clear_contextvars()


def test_a_message_sent_with_traceparent_is_processed_in_the_producers_trace(
    provider: TracerProvider, exported: InMemorySpanExporter, logs: Any
) -> None:
    # GIVEN a producer that sends inside its own span, with traceparent injected
    producer = provider.get_tracer("producer")
    with producer.start_as_current_span("send orders", kind=trace.SpanKind.PRODUCER) as send_span:
        attributes = inject_traceparent({"tenant": {"DataType": "String", "StringValue": "acme"}})
    received = message(
        "{}", message_id="m-7", receive_count=3, queue_url=QUEUE, message_attributes=attributes
    )

    # WHEN the consumer processes and deletes it
    run(Tracing(tracer_provider=provider), received, "deleted")

    # THEN one consumer span, child of and linked to the producer span, says what happened
    (span,) = consumer_spans(exported)
    sent = send_span.get_span_context()
    assert span.parent is not None and span.parent.span_id == sent.span_id
    assert span.context.trace_id == sent.trace_id
    assert [link.context.span_id for link in span.links] == [sent.span_id]
    assert span.name == "process orders"
    assert span.attributes is not None
    assert span.attributes["messaging.system"] == "aws_sqs"
    assert span.attributes["messaging.operation.type"] == "process"
    assert span.attributes["messaging.destination.name"] == "orders"
    assert span.attributes["messaging.message.id"] == "m-7"
    assert span.attributes["messaging.aws_sqs.message.receive_count"] == 3
    assert span.attributes["sqs_poller.outcome"] == "deleted"
    assert span.status.status_code == trace.StatusCode.UNSET
    # AND the handler's log line carries the same trace id and the consumer span's id
    (line,) = [r for r in logs() if r["event"] == "handled"]
    assert line["trace_id"] == hex_trace(span) == trace.format_trace_id(sent.trace_id)
    assert line["span_id"] == trace.format_span_id(span.context.span_id)


def test_a_message_with_an_aws_trace_header_is_processed_in_that_xray_trace(
    sqs: Any, make_queues: Any, provider: TracerProvider, exported: InMemorySpanExporter, logs: Any
) -> None:
    # GIVEN a message an X-Ray instrumented producer sent (SQS keeps its AWSTraceHeader)
    url, _ = make_queues()
    sqs.send_message(
        QueueUrl=url,
        MessageBody="{}",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY_HEADER}},
    )
    raw = sqs.receive_message(
        QueueUrl=url, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"], WaitTimeSeconds=2
    )["Messages"][0]
    received = Message.from_sqs(raw, url)
    assert received.attributes.get("AWSTraceHeader") == XRAY_HEADER

    # WHEN it is processed and deleted
    run(Tracing(tracer_provider=provider), received)

    # THEN its span continues that trace under that parent, and so do the handler's logs
    (span,) = consumer_spans(exported)
    assert hex_trace(span) == XRAY_TRACE
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == XRAY_PARENT
    assert [trace.format_span_id(link.context.span_id) for link in span.links] == [XRAY_PARENT]
    (line,) = [r for r in logs() if r["event"] == "handled"]
    assert line["trace_id"] == XRAY_TRACE


def test_with_both_contexts_traceparent_is_the_parent_and_both_are_linked(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    received = message(
        "{}",
        attributes={"AWSTraceHeader": XRAY_HEADER},
        message_attributes={"traceparent": {"DataType": "String", "StringValue": traceparent}},
    )
    run(Tracing(tracer_provider=provider), received)
    (span,) = consumer_spans(exported)
    assert hex_trace(span) == "0af7651916cd43dd8448eb211c80319c"
    assert {trace.format_span_id(link.context.span_id) for link in span.links} == {
        "b7ad6b7169203331",
        XRAY_PARENT,
    }


def test_without_a_context_each_message_starts_its_own_trace_and_logs_it(
    provider: TracerProvider, exported: InMemorySpanExporter, logs: Any
) -> None:
    run(Tracing(tracer_provider=provider), message("{}", message_id="a"))
    (span,) = consumer_spans(exported)
    assert span.parent is None and not span.links
    (line,) = [r for r in logs() if r["event"] == "handled"]
    assert line["trace_id"] == hex_trace(span)


def test_a_message_without_context_never_inherits_the_previous_message_on_its_thread(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    # GIVEN a thread whose previous message left its span current (an async handler's `after`
    # runs elsewhere, so the context could not be reset on this thread)
    step = Tracing(tracer_provider=provider)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    first = message(
        "{}",
        message_id="first",
        receipt_handle="rh-1",
        message_attributes={"traceparent": {"DataType": "String", "StringValue": traceparent}},
    )
    step.before(first)
    # WHEN the next message, with no context of its own, starts on the same thread
    second = message("{}", message_id="second", receipt_handle="rh-2")
    step.before(second)
    step.after(second, None)
    step.after(first, None)  # leaves this test's thread as it found it
    step.settled(first, "deleted")
    step.settled(second, "deleted")
    structlog.contextvars.clear_contextvars()
    # THEN it is a trace of its own
    spans = {s.attributes["messaging.message.id"]: s for s in consumer_spans(exported)}  # type: ignore[index]
    assert spans["second"].parent is None
    assert spans["second"].context.trace_id != spans["first"].context.trace_id


def test_logs_carry_trace_ids_even_when_nothing_is_exported(logs: Any) -> None:
    # GIVEN a provider with no exporter at all (OTEL_TRACES_EXPORTER=none)
    step = Tracing(tracer_provider=TracerProvider())
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    received = message(
        "{}", message_attributes={"traceparent": {"DataType": "String", "StringValue": traceparent}}
    )
    run(step, received)
    (line,) = [r for r in logs() if r["event"] == "handled"]
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(line["span_id"]) == 16 and line["span_id"] != "00f067aa0ba902b7"


def test_an_unsampled_xray_context_is_not_exported_but_still_logged(
    provider: TracerProvider, exported: InMemorySpanExporter, logs: Any
) -> None:
    header = XRAY_HEADER.replace("Sampled=1", "Sampled=0")
    run(Tracing(tracer_provider=provider), message("{}", attributes={"AWSTraceHeader": header}))
    assert consumer_spans(exported) == []
    (line,) = [r for r in logs() if r["event"] == "handled"]
    assert line["trace_id"] == XRAY_TRACE


def test_a_failed_handler_marks_the_span_and_the_outcome_is_recorded(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    def failing(_: Message) -> None:
        raise ValueError("downstream said no")

    def poisoned(_: Message) -> None:
        raise Poison("bad document")

    step = Tracing(tracer_provider=provider)
    run(step, message("{}", message_id="r", receipt_handle="rh-r"), "retried", failing)
    run(step, message("{}", message_id="d", receipt_handle="rh-d"), "dead_lettered", poisoned)
    spans = {s.attributes["messaging.message.id"]: s for s in consumer_spans(exported)}  # type: ignore[index]
    retried, dead = spans["r"], spans["d"]
    assert retried.attributes["sqs_poller.outcome"] == "retried"  # type: ignore[index]
    assert retried.attributes["error.type"] == "ValueError"  # type: ignore[index]
    assert [e.name for e in retried.events] == ["exception"]
    assert dead.attributes["sqs_poller.outcome"] == "dead_lettered"  # type: ignore[index]
    assert dead.status.status_code == trace.StatusCode.ERROR


def test_one_span_per_message_when_messages_run_in_parallel(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    # GIVEN ten messages from ten different producer traces, run on ten threads at once
    step = Tracing(tracer_provider=provider)
    producer = provider.get_tracer("producer")
    messages, parents = [], {}
    for n in range(10):
        with producer.start_as_current_span(f"send {n}", kind=trace.SpanKind.PRODUCER) as send_span:
            attrs = inject_traceparent({})
        msg = message("{}", message_id=f"m-{n}", receipt_handle=f"rh-{n}", message_attributes=attrs)
        messages.append(msg)
        parents[msg.message_id] = send_span.get_span_context()
    started = threading.Barrier(10)

    def handler(_: Message) -> None:
        started.wait(timeout=10)  # every span is open at once

    threads = [threading.Thread(target=run, args=(step, m, "deleted", handler)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # THEN each message has its own span, under its own producer
    spans = consumer_spans(exported)
    assert len(spans) == 10
    for span in spans:
        parent = parents[span.attributes["messaging.message.id"]]  # type: ignore[index]
        assert span.parent is not None and span.parent.span_id == parent.span_id
        assert span.context.trace_id == parent.trace_id


def test_unsettled_spans_end_at_close(provider: TracerProvider, exported: InMemorySpanExporter) -> None:
    step = Tracing(tracer_provider=provider)
    run_sync(Pipeline([step]), handle_and_log, message("{}"))
    assert consumer_spans(exported) == []  # still open: not settled yet
    step.close()
    (span,) = consumer_spans(exported)
    assert span.attributes["sqs_poller.outcome"] == "unsettled"  # type: ignore[index]


def test_send_injects_traceparent_only_where_it_fits(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("producer")
    ten = {f"a{n}": {"DataType": "String", "StringValue": "v"} for n in range(10)}
    own = {"traceparent": {"DataType": "String", "StringValue": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}
    with tracer.start_as_current_span("send"):
        assert inject_traceparent(ten) == ten
        assert inject_traceparent(own) == own
        added = inject_traceparent({})
    assert added["traceparent"]["StringValue"].startswith("00-")
    assert inject_traceparent({}) == {}  # no current span: nothing to propagate


def test_send_outside_any_trace_makes_a_create_span_the_consumer_continues(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    # GIVEN `sqs-poller send` run from a shell: no span is current
    producer = SendTracing(tracer_provider=provider)
    attributes = producer.inject(QUEUE, {"tenant": {"DataType": "String", "StringValue": "acme"}})
    (create,) = [s for s in exported.get_finished_spans() if s.kind == trace.SpanKind.PRODUCER]
    assert create.name == "create orders"
    assert attributes["tenant"]["StringValue"] == "acme"

    # WHEN the consumer processes the message
    run(Tracing(tracer_provider=provider), message("{}", queue_url=QUEUE, message_attributes=attributes))

    # THEN its span is the create span's child
    (span,) = consumer_spans(exported)
    assert span.parent is not None and span.parent.span_id == create.context.span_id


def test_send_inside_a_callers_span_injects_that_span(
    provider: TracerProvider, exported: InMemorySpanExporter
) -> None:
    producer = SendTracing(tracer_provider=provider)
    with provider.get_tracer("api").start_as_current_span("POST /orders") as request:
        attributes = producer.inject(QUEUE, {})
    assert attributes["traceparent"]["StringValue"].split("-")[2] == trace.format_span_id(
        request.get_span_context().span_id
    )
    assert [s.name for s in exported.get_finished_spans()] == ["POST /orders"]
    ten = {f"a{n}": {"DataType": "String", "StringValue": "v"} for n in range(10)}
    assert producer.inject(QUEUE, ten) == ten
