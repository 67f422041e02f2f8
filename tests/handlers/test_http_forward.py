"""The built-in HTTP forwarder against a real local HTTP server (examples.legacy_stub)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from examples.legacy_stub import DROP, HANG, LegacyStub
from poller import Message, Poison, Retry, Unavailable
from poller.errors import ConfigError
from poller.handlers.http import Forward, ForwardError, display_url, parse_retry_after
from tests.messages import message

SENT_AT = datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC)


def make_message(body: str = '{"hello": "world"}', group_id: str | None = None) -> Message:
    return message(body, message_id="0f1e2d3c-msg", receive_count=3, group_id=group_id, sent_at=SENT_AT)


@pytest.fixture
def stub():
    with LegacyStub() as server:
        yield server


@pytest.fixture
def forward(stub):
    handler = Forward({"url": f"{stub.url}/jobs", "timeout": 2})
    yield handler
    handler.close()


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_returns_so_the_message_is_deleted(stub, forward, status):
    # GIVEN the endpoint answers 2xx
    stub.respond("/jobs", status)
    # WHEN the message is handled THEN the handler returns normally
    assert forward.handle(make_message()) is None
    # AND the body arrived unchanged, with the poller's headers
    [request] = stub.requests_to("/jobs")
    assert request.method == "POST"
    assert request.body == b'{"hello": "world"}'
    assert request.headers["X-Sqs-Poller-Message-Id"] == "0f1e2d3c-msg"
    assert request.headers["X-Sqs-Poller-Receive-Count"] == "3"
    assert request.headers["X-Sqs-Poller-Sent-At"] == "2026-03-01T12:30:15+00:00"
    assert "X-Sqs-Poller-Group-Id" not in request.headers
    assert request.headers["Content-Type"] == "application/json"


def test_group_id_header_and_custom_headers_and_method(stub):
    # GIVEN a PUT forwarder with extra headers, and a FIFO message
    handler = Forward({"url": f"{stub.url}/jobs", "method": "put", "headers": {"X-Team": "mail"}})
    # WHEN handled
    handler.handle(make_message(group_id="tenant-42"))
    handler.close()
    # THEN the group id and the extra header are sent, with PUT
    [request] = stub.requests
    assert request.method == "PUT"
    assert request.headers["X-Sqs-Poller-Group-Id"] == "tenant-42"
    assert request.headers["X-Team"] == "mail"


def test_429_with_retry_after_seconds_retries_after_that_delay(stub, forward):
    # GIVEN the endpoint refuses this request and says when to come back
    stub.respond("/jobs", 429, headers={"Retry-After": "120"})
    # WHEN handled THEN Retry with exactly that delay (the endpoint is up: no outage)
    with pytest.raises(Retry) as info:
        forward.handle(make_message())
    assert info.value.delay == 120
    assert "HTTP 429" in info.value.reason
    assert not isinstance(info.value, Unavailable)


def test_503_with_retry_after_is_unavailable_for_that_long(stub, forward):
    # GIVEN the endpoint is down for maintenance and says when it is back
    stub.respond("/jobs", 503, headers={"Retry-After": "120"})
    # WHEN handled THEN Unavailable, retry_after exactly that (the breaker's cooldown if larger)
    with pytest.raises(Unavailable) as info:
        forward.handle(make_message())
    assert info.value.retry_after == 120
    assert str(info.value) == f"HTTP 503 from {stub.url}/jobs, Retry-After 120s"


def test_retry_after_http_date(stub, forward):
    # GIVEN a Retry-After as an HTTP-date about 90 seconds ahead
    when = datetime.now(tz=UTC) + timedelta(seconds=90)
    stub.respond("/jobs", 429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    stub.respond("/jobs", 503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    # WHEN handled THEN the delay is about 90 seconds, for a Retry and an Unavailable alike
    with pytest.raises(Retry) as retry:
        forward.handle(make_message())
    assert 85 <= retry.value.delay <= 91
    with pytest.raises(Unavailable) as down:
        forward.handle(make_message())
    assert 85 <= down.value.retry_after <= 91


def test_retry_after_is_capped_at_sqs_maximum(stub, forward):
    # GIVEN an absurd Retry-After WHEN handled THEN the delay is capped at 12 hours
    stub.respond("/jobs", 429, headers={"Retry-After": "999999"})
    with pytest.raises(Retry) as info:
        forward.handle(make_message())
    assert info.value.delay == 43200


def test_429_without_retry_after_uses_the_backoff(stub, forward):
    # GIVEN a refusal without Retry-After WHEN handled THEN a plain, retryable error
    stub.respond("/jobs", 429)
    with pytest.raises(ForwardError, match="HTTP 429 from http://127.0.0.1"):
        forward.handle(make_message())


@pytest.mark.parametrize("status", [502, 503, 504])
def test_502_503_504_say_the_downstream_is_unavailable(stub, forward, status):
    # GIVEN a gateway or the endpoint itself says it is down (503 without Retry-After too)
    stub.respond("/jobs", status, body="upstream connect error")
    # WHEN handled THEN Unavailable, naming the status and URL only
    with pytest.raises(Unavailable) as info:
        forward.handle(make_message())
    assert str(info.value) == f"HTTP {status} from {stub.url}/jobs"
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [500, 501, 505, 599])
def test_other_5xx_retry_with_backoff_naming_the_status_not_the_body(stub, forward, status):
    # GIVEN a server error whose body holds internals
    stub.respond("/jobs", status, body="Traceback: password=hunter2")
    # WHEN handled THEN a plain exception (backoff) names the status and URL only
    with pytest.raises(ForwardError) as info:
        forward.handle(make_message())
    assert str(info.value) == f"HTTP {status} from {stub.url}/jobs"
    assert not isinstance(info.value, Retry | Poison)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_other_4xx_is_poison_with_the_status(stub, forward, status):
    # GIVEN the endpoint rejects the request
    stub.respond("/jobs", status, body="bad field: secret-ish detail")
    # WHEN handled THEN poison records the status, not the body
    with pytest.raises(Poison) as info:
        forward.handle(make_message())
    assert info.value.reason == f"HTTP {status} from {stub.url}/jobs"


def test_redirect_is_not_followed_and_retries(stub, forward):
    # GIVEN a redirect (a misconfigured URL) WHEN handled THEN not followed, retried
    stub.respond("/jobs", 302, headers={"Location": "/elsewhere"})
    with pytest.raises(ForwardError, match="HTTP 302"):
        forward.handle(make_message())
    assert stub.requests_to("/elsewhere") == []


def test_hanging_endpoint_times_out_as_unavailable(stub):
    # GIVEN an endpoint that never answers and a 0.5 s timeout
    stub.respond("/jobs", HANG)
    handler = Forward({"url": f"{stub.url}/jobs", "timeout": 0.5})
    # WHEN handled THEN Unavailable naming the timeout, within about the timeout
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"ReadTimeout after 0.5s"):
        handler.handle(make_message())
    assert time.monotonic() - started < 3
    handler.close()


def test_refused_connection_is_unavailable():
    # GIVEN a port nobody listens on
    handler = Forward({"url": f"http://127.0.0.1:{free_closed_port()}/jobs", "timeout": 2})
    # WHEN handled THEN Unavailable naming the class
    with pytest.raises(Unavailable, match="failed: ConnectionError"):
        handler.handle(make_message())
    handler.close()


def test_connection_closed_without_an_answer_is_unavailable(stub, forward):
    # GIVEN the endpoint drops the connection (a reset, a crashing server) THEN Unavailable
    stub.respond("/jobs", DROP)
    with pytest.raises(Unavailable, match="failed: ConnectionError"):
        forward.handle(make_message())
    # AND the next request goes through on a fresh connection
    forward.handle(make_message())
    assert [r.status for r in stub.requests] == [DROP, 201]


def test_connections_are_pooled(stub, forward):
    # GIVEN a forwarder WHEN it sends 20 messages
    for _ in range(20):
        forward.handle(make_message())
    # THEN all arrived, over kept-alive connections (one pool, not one connection each)
    requests = stub.requests_to("/jobs")
    assert len(requests) == 20
    assert len({r.client for r in requests}) == 1


def test_forward_sends_a_transformed_body_with_its_content_type(stub, forward):
    # GIVEN a caller that transformed the body WHEN forwarding it
    response = forward.forward(make_message(), "a=1&b=2", "application/x-www-form-urlencoded")
    # THEN the transformed body is sent and the 2xx response returned
    assert response.status_code == 201
    [request] = stub.requests
    assert request.body == b"a=1&b=2"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_secret_headers_are_resolved_per_request(stub):
    # GIVEN a header referring to a secret, and a secrets mapping that changes
    secrets = {"legacy_token": "tok-1"}
    handler = Forward(
        {
            "url": f"{stub.url}/jobs",
            "headers": {"Authorization": "Bearer ${secret:legacy_token}"},
            "secrets": secrets,
        }
    )
    # WHEN messages are sent before and after the secret changes
    handler.handle(make_message())
    secrets["legacy_token"] = "tok-2"
    handler.handle(make_message())
    handler.close()
    # THEN each request carried the value current at the time
    assert [r.headers["Authorization"] for r in stub.requests] == ["Bearer tok-1", "Bearer tok-2"]
    assert "tok-1" not in repr(handler.headers)


def test_url_credentials_and_query_never_appear_in_reasons(stub):
    # GIVEN a URL with credentials and a token in the query
    host = stub.url.removeprefix("http://")
    handler = Forward({"url": f"http://user:pa55@{host}/jobs?token=abc123"})
    stub.respond("/jobs?token=abc123", 404)
    # WHEN the endpoint rejects THEN the reason shows the URL without them
    with pytest.raises(Poison) as info:
        handler.handle(make_message())
    assert info.value.reason == f"HTTP 404 from {stub.url}/jobs"
    handler.close()


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "url"),
        ({"url": "ftp://x/y"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://x", "timeout": 0}, "timeout"),
        ({"url": "http://x", "timeout": "5"}, "timeout"),
        ({"url": "http://x", "method": "DELETE"}, "method"),
        ({"url": "http://x", "pool_size": 0}, "pool_size"),
        ({"url": "http://x", "headers": {"A": 1}}, "headers"),
        ({"url": "http://x", "headers": {"A": "${secret:x}"}}, "headers"),
        ({"url": "http://x", "headers": {"A": "${secret:x}"}, "secrets": {"y": "1"}}, "headers"),
        ({"url": "http://x", "retries": 3}, "retries"),
    ],
)
def test_bad_options_name_the_option(options, key):
    # GIVEN bad options WHEN constructing THEN a config error names the option
    with pytest.raises(ConfigError, match=f"handler.options.{key}"):
        Forward(options)


def test_parse_retry_after():
    # GIVEN header values WHEN parsed THEN seconds, capped, or None when unusable
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("0") == 0
    assert parse_retry_after(" 30 ") == 30
    assert parse_retry_after("-5") == 0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


def test_display_url_strips_credentials_and_query():
    assert display_url("https://u:p@h.example:8443/a/b?x=1#f") == "https://h.example:8443/a/b"
