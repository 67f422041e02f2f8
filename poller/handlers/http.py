"""``Forward``: hand each message to an HTTP endpoint, like Elastic Beanstalk's worker daemon.

For teams whose logic lives in any language behind HTTP. Target
``poller.handlers.http:Forward``; options (``[handler.options]``):

- ``url`` (required): ``http://`` or ``https://`` endpoint.
- ``timeout`` (seconds, default 10, 0 < t <= 3600): connect timeout and read timeout of
  each request (keep it under ``handler.timeout``).
- ``method``: ``POST`` (default), ``PUT`` or ``PATCH``.
- ``content_type``: default ``application/json``.
- ``headers``: extra headers; a value may name a secret as ``${secret:NAME}``, resolved on
  every request from ``options["secrets"]`` (a ``poller.pipeline.secrets.Secrets``) so refreshed
  secrets apply at once and never sit in the config.
- ``pool_size`` (default 10, 1..1000): pooled keep-alive connections; match
  ``workers.concurrency``.
- ``verify``: TLS verification, ``true`` (default), ``false`` or a CA bundle path.

Each request carries ``X-Sqs-Poller-Message-Id``, ``X-Sqs-Poller-Receive-Count``,
``X-Sqs-Poller-Sent-At`` (ISO-8601 UTC) and, on FIFO queues, ``X-Sqs-Poller-Group-Id``.

Outcomes: 2xx returns (the message is deleted). The endpoint being down raises
``Unavailable``: the message is retried after the flow-control cooldown, never dead-lettered for
it, and enough of them open the host's circuit breaker, which pauses polling. Down means a
refused or reset connection, a timeout, or HTTP 502, 503 or 504; a valid ``Retry-After`` (seconds
or HTTP-date, capped at 43200 s) on a 503 becomes ``retry_after``. 429 with a ``Retry-After``
raises ``Retry(delay=...)`` (one request refused, the endpoint is up). 429 without one, any other
5xx and 3xx raise ``ForwardError``, a plain exception, so the daemon's backoff applies. Any other
4xx raises ``Poison("HTTP <status> from <url>")``.
Reasons name the status or the error class and the URL without credentials or query string,
never the body.

``forward(message, body=None, content_type=None)`` sends a different (transformed) body with
the same policy and returns the 2xx ``requests.Response``; ``handle(message)`` forwards
``message.body``. ``close()`` closes the connection pool.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import structlog
from requests.adapters import HTTPAdapter

from poller import __version__
from poller.errors import ConfigError
from poller.message import Message, Poison, Retry, Unavailable

log = structlog.get_logger(__name__)

MAX_RETRY_AFTER = 43200
DOWN_STATUSES = (502, 503, 504)  # a gateway or the endpoint itself says it is down
_OPTIONS = {"url", "timeout", "method", "content_type", "headers", "pool_size", "verify", "secrets"}
_SECRET_REF = re.compile(r"\$\{secret:([^}]+)\}")


class ForwardError(Exception):
    """A transient failure to deliver: retried with the daemon's backoff."""


class Forward:
    """POST each message to ``options["url"]``; one instance (and pool) per worker process."""

    def __init__(self, options: Mapping[str, Any]):
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ConfigError(f"handler.options.{unknown[0]}: unknown option for Forward")
        self.url = _check_url(options.get("url"))
        self.display_url = display_url(self.url)
        self.timeout = _check_number("timeout", options.get("timeout", 10), 0, 3600)
        self.method = str(options.get("method", "POST")).upper()
        if self.method not in ("POST", "PUT", "PATCH"):
            raise ConfigError(f"handler.options.method: POST, PUT or PATCH, got {self.method!r}")
        self.content_type = str(options.get("content_type", "application/json"))
        self.headers = dict(options.get("headers") or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise ConfigError("handler.options.headers: names and values must be strings")
        self.secrets = options.get("secrets")
        for value in self.headers.values():
            for name in _SECRET_REF.findall(value):
                if self.secrets is None:
                    raise ConfigError(
                        f"handler.options.headers: ${{secret:{name}}} needs a [secrets] section"
                    )
                if name not in self.secrets:
                    raise ConfigError(f"handler.options.headers: no secret named {name!r}")
        pool_size = int(_check_number("pool_size", options.get("pool_size", 10), 0, 1000))
        self.session = requests.Session()
        self.session.verify = options.get("verify", True)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def handle(self, message: Message) -> None:
        self.forward(message)

    def forward(
        self,
        message: Message,
        body: str | bytes | None = None,
        content_type: str | None = None,
    ) -> requests.Response:
        """Send `body` (default: the message body); apply the outcome policy to the response."""
        data = message.body if body is None else body
        try:
            response = self.session.request(
                self.method,
                self.url,
                data=data.encode("utf-8") if isinstance(data, str) else data,
                headers=self._headers_for(message, content_type),
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise Unavailable(
                f"{self.method} {self.display_url} failed: {type(exc).__name__} after {self.timeout:g}s"
            ) from None
        except requests.ConnectionError as exc:  # refused, reset, closed without an answer
            raise Unavailable(f"{self.method} {self.display_url} failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise ForwardError(f"{self.method} {self.display_url} failed: {type(exc).__name__}") from None
        self._check_status(response)
        return response

    def close(self) -> None:
        self.session.close()

    def _headers_for(self, message: Message, content_type: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": content_type or self.content_type,
            "User-Agent": f"sqs-poller/{__version__}",
            "X-Sqs-Poller-Message-Id": message.message_id,
            "X-Sqs-Poller-Receive-Count": str(message.receive_count),
            "X-Sqs-Poller-Sent-At": message.sent_at.astimezone(UTC).isoformat(),
        }
        if message.group_id is not None:
            headers["X-Sqs-Poller-Group-Id"] = message.group_id
        for name, value in self.headers.items():
            headers[name] = _SECRET_REF.sub(lambda m: str(self.secrets[m.group(1)]), value)
        return headers

    def _check_status(self, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        where = f"HTTP {status} from {self.display_url}"
        response.close()
        if status in DOWN_STATUSES:
            delay = parse_retry_after(response.headers.get("Retry-After")) if status == 503 else None
            if delay is not None:
                raise Unavailable(f"{where}, Retry-After {delay:g}s", retry_after=delay)
            raise Unavailable(where)
        if status == 429:
            delay = parse_retry_after(response.headers.get("Retry-After"))
            if delay is not None:
                log.info("forward_retry_after", status=status, delay=delay)
                raise Retry(delay=delay, reason=f"{where}, Retry-After {delay:g}s")
            raise ForwardError(where)
        if 400 <= status < 500:
            raise Poison(where)
        raise ForwardError(where)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or HTTP-date), capped; None if invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(tz=UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return float(min(max(seconds, 0.0), MAX_RETRY_AFTER))


def display_url(url: str) -> str:
    """The URL without user info, query or fragment: safe for logs and DLQ reasons."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError("handler.options.url: required, an http:// or https:// URL")
    if not urlsplit(url).hostname:
        raise ConfigError("handler.options.url: the URL has no host")
    return url


def _check_number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        raise ConfigError(f"handler.options.{name}: must be a number within ({low:g}, {high:g}]")
    return float(value)
