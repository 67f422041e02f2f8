"""One OpenTelemetry consumer span per message, in the producer's trace; trace ids in the logs.

Needs the ``[otel]`` extra; nothing here imports OpenTelemetry until a ``Tracing`` step is
constructed (``[tracing] enabled``), so tracing off costs nothing.

Creation context: the W3C ``traceparent`` (and ``tracestate``) message attribute, else the
``AWSTraceHeader`` system attribute that SQS sets when an X-Ray instrumented producer sends
(read with the AWS X-Ray propagator). A context that does not parse is ignored.

Trace structure, after the OpenTelemetry messaging semantic conventions ("Consumer spans"):
every message gets its own ``process {queue}`` span, kind CONSUMER. The conventions say a
process span SHOULD link to each message's creation context and, for a span covering a single
message, MAY make it the parent. We do both: the parent puts the request that enqueued the
message and the handler that ran minutes later on another host in one trace (what operators
asked for), and the link keeps the relation for tools that follow links, including a second
context when a message carries both headers. The worker has no ambient span around a message,
which is the one case where the conventions advise against parenting. The span is current
while the handler runs (synchronous handlers; an async handler's coroutine runs on the event
loop, outside it), so the handler's own instrumented calls become its children.

Attributes: ``messaging.system`` "aws_sqs", ``messaging.operation.type`` and
``messaging.operation.name`` "process", ``messaging.destination.name`` (the queue name),
``messaging.message.id``, ``aws.sqs.queue.url``, ``server.address``, and, outside the registry,
``messaging.aws_sqs.message.receive_count`` and ``messaging.aws_sqs.message.group_id`` (FIFO).
A failing handler adds ``error.type`` and the exception event; ``settled`` adds
``sqs_poller.outcome`` (deleted, retried, dead_lettered, released, filtered) and ends the span,
so its duration runs from the first step to the confirmed settlement. A dead-lettered message's
span has status ERROR.

Logs: ``before`` binds ``trace_id`` and ``span_id`` (lowercase hex, as W3C writes them) into
structlog's context variables, whether or not spans are sampled or exported; the worker clears
them after settling.

Export is configured the standard way: a tracer provider already installed in the process is
used as it is; otherwise an SDK provider with the resource from ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES`` (service name "sqs-poller" when unset), the sampler from
``OTEL_TRACES_SAMPLER``, and one batch processor per exporter named in
``OTEL_TRACES_EXPORTER`` (default ``otlp``, over ``OTEL_EXPORTER_OTLP_PROTOCOL``, default
http/protobuf; ``none`` exports nothing but still puts ids in the logs).

Producers: ``inject_traceparent(attributes)`` adds the current context; ``SendTracing`` also
makes a ``create`` span for a message sent outside any trace (``sqs-poller send``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

import structlog

from poller.config import queue_name
from poller.errors import ConfigError
from poller.message import Message, Skip

log = structlog.get_logger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
XRAY_SYSTEM_ATTRIBUTE = "AWSTraceHeader"
XRAY_HEADER = "X-Amzn-Trace-Id"
OUTCOME_ATTRIBUTE = "sqs_poller.outcome"
MAX_ATTRIBUTES = 10  # SQS's limit of message attributes per message
MAX_OPEN_SPANS = 10_000  # a span never settled must not grow the map without bound
FLUSH_MILLIS = 5000


@dataclass
class _Open:
    span: Any
    token: Any
    thread: int


class Tracing:
    """The pipeline step: a consumer span per message (see the module doc)."""

    def __init__(self, tracer_provider: Any = None):
        try:
            from opentelemetry import context, trace
            from opentelemetry.propagators.aws import AwsXRayPropagator
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ConfigError(
                "tracing.enabled: OpenTelemetry is not installed; pip install 'sqs-poller[otel]'"
            ) from None
        self._context = context
        self._trace = trace
        self._w3c = TraceContextTextMapPropagator()
        self._xray = AwsXRayPropagator()
        self._owns_provider = False
        if tracer_provider is None:
            tracer_provider, self._owns_provider = configure_tracer_provider()
        self._provider = tracer_provider
        from poller import __version__

        self._tracer = tracer_provider.get_tracer("sqs-poller", __version__)
        self._open: dict[tuple[str, str], _Open] = {}
        self._lock = threading.Lock()

    def before(self, message: Message) -> Message:
        trace = self._trace
        parent, links = self.creation_contexts(message)
        span = self._tracer.start_span(
            f"process {queue_name(message.queue_url)}",
            # No creation context: a new trace, never a child of whatever this thread ran last.
            context=parent if parent is not None else self._context.Context(),
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes=span_attributes(message),
        )
        token = self._context.attach(trace.set_span_in_context(span))
        self._remember(message, _Open(span, token, threading.get_ident()))
        ids = span.get_span_context()
        structlog.contextvars.bind_contextvars(
            trace_id=trace.format_trace_id(ids.trace_id), span_id=trace.format_span_id(ids.span_id)
        )
        return message

    def after(self, message: Message, error: BaseException | None) -> None:
        with self._lock:
            entry = self._open.get(_key(message))
        if entry is None:
            return
        if error is not None and not isinstance(error, Skip):
            entry.span.set_attribute("error.type", type(error).__qualname__)
            entry.span.record_exception(error)
        if entry.token is not None and entry.thread == threading.get_ident():
            self._context.detach(entry.token)  # a token only resets on the thread that made it
            entry.token = None

    def settled(self, message: Message, outcome: str) -> None:
        with self._lock:
            entry = self._open.pop(_key(message), None)
        if entry is not None:
            self._end(entry, outcome)

    def close(self) -> None:
        with self._lock:
            left, self._open = list(self._open.values()), {}
        for entry in left:
            self._end(entry, "unsettled")
        if self._owns_provider:
            self._provider.force_flush(FLUSH_MILLIS)
            self._provider.shutdown()

    # --- helpers ------------------------------------------------------------------------------

    def creation_contexts(self, message: Message) -> tuple[Any, list[Any]]:
        """(parent context or None, links): traceparent first, then AWSTraceHeader."""
        trace = self._trace
        found: list[tuple[Any, Any]] = []
        w3c = {
            name: attr.get("StringValue")
            for name in (TRACEPARENT, TRACESTATE)
            if isinstance(attr := message.message_attributes.get(name), dict) and attr.get("StringValue")
        }
        if TRACEPARENT in w3c:
            found.append(self._extract(self._w3c, w3c))
        header = message.attributes.get(XRAY_SYSTEM_ATTRIBUTE)
        if header:
            found.append(self._extract(self._xray, {XRAY_HEADER: header}))
        valid = [(ctx, ids) for ctx, ids in found if ids.is_valid]
        links, seen = [], set()
        for _, ids in valid:
            if (ids.trace_id, ids.span_id) not in seen:
                seen.add((ids.trace_id, ids.span_id))
                links.append(trace.Link(ids))
        return (valid[0][0] if valid else None), links

    def _extract(self, propagator: Any, carrier: dict[str, str]) -> tuple[Any, Any]:
        ctx = propagator.extract(carrier, context=self._context.Context())
        return ctx, self._trace.get_current_span(ctx).get_span_context()

    def _remember(self, message: Message, entry: _Open) -> None:
        stale = None
        with self._lock:
            self._open[_key(message)] = entry
            if len(self._open) > MAX_OPEN_SPANS:
                stale = self._open.pop(next(iter(self._open)))
        if stale is not None:
            self._end(stale, "unsettled")

    def _end(self, entry: _Open, outcome: str) -> None:
        span = entry.span
        span.set_attribute(OUTCOME_ATTRIBUTE, outcome)
        if outcome == "dead_lettered":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "dead-lettered"))
        span.end()


def unbind_trace_ids() -> None:
    """End a message's ``trace_id`` and ``span_id`` log fields (``before`` binds them)."""
    structlog.contextvars.unbind_contextvars("trace_id", "span_id")


def _key(message: Message) -> tuple[str, str]:
    # The receipt handle tells two deliveries of one message id apart.
    return message.message_id, message.receipt_handle


def span_attributes(message: Message) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "aws_sqs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue_name(message.queue_url),
        "messaging.message.id": message.message_id,
        "messaging.aws_sqs.message.receive_count": message.receive_count,
        "aws.sqs.queue.url": message.queue_url,
    }
    host = urlsplit(message.queue_url).hostname
    if host:
        attributes["server.address"] = host
    if message.group_id:
        attributes["messaging.aws_sqs.message.group_id"] = message.group_id
    return attributes


def configure_tracer_provider() -> tuple[Any, bool]:
    """(provider, created): the process's provider if one is installed, else a new SDK one
    set up from the OTEL_* environment and installed globally."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current, False
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "sqs-poller"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters_from_env():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider, True


def exporters_from_env(environ: dict[str, str] | None = None) -> list[Any]:
    """Span exporters named in OTEL_TRACES_EXPORTER, through the SDK's entry points."""
    env = os.environ if environ is None else environ
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    exporters = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            name = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning("tracing_exporter_missing", exporter=name, note="spans are not exported")
            continue
        exporters.append(next(iter(found)).load()())
    return exporters


class SendTracing:
    """For producers with no trace of their own (``sqs-poller send`` from a shell): each
    message gets a ``create {queue}`` PRODUCER span, whose context ``traceparent`` carries.
    Inside a caller's span no span is made: that span's context is injected as it is."""

    def __init__(self, tracer_provider: Any = None):
        try:
            from opentelemetry import trace
        except ImportError:
            raise ConfigError(
                "tracing.enabled: OpenTelemetry is not installed; pip install 'sqs-poller[otel]'"
            ) from None
        self._trace = trace
        self._owns_provider = False
        if tracer_provider is None:
            tracer_provider, self._owns_provider = configure_tracer_provider()
        self._provider = tracer_provider
        self._tracer = tracer_provider.get_tracer("sqs-poller")

    def inject(self, queue_url: str, message_attributes: dict[str, Any]) -> dict[str, Any]:
        """The attributes with ``traceparent`` added where it fits (see inject_traceparent)."""
        trace = self._trace
        if TRACEPARENT in message_attributes or len(message_attributes) >= MAX_ATTRIBUTES:
            return dict(message_attributes)
        if trace.get_current_span().get_span_context().is_valid:
            return inject_traceparent(message_attributes)
        name = queue_name(queue_url)
        attributes = {
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "create",
            "messaging.operation.name": "create",
            "messaging.destination.name": name,
        }
        with self._tracer.start_as_current_span(
            f"create {name}", context=None, kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            return inject_traceparent(message_attributes)

    def close(self) -> None:
        if self._owns_provider:
            self._provider.force_flush(FLUSH_MILLIS)
            self._provider.shutdown()


def inject_traceparent(message_attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes plus ``traceparent`` from the current context. Unchanged when the message
    already has one (a producer's own creation context is kept), has SQS's maximum of ten
    attributes, there is no current span, or OpenTelemetry is not installed."""
    attributes = dict(message_attributes)
    if TRACEPARENT in attributes or len(attributes) >= MAX_ATTRIBUTES:
        return attributes
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return attributes
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    if TRACEPARENT in carrier:
        attributes[TRACEPARENT] = {"DataType": "String", "StringValue": carrier[TRACEPARENT]}
    return attributes
