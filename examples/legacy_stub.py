"""A tiny stand-in for the slow legacy HTTP system, for the demo and the tests.

    stub = LegacyStub().start()          # 127.0.0.1, a free port; stub.url
    stub.respond("/mailboxes", 503, headers={"Retry-After": "2"})   # next response only
    stub.respond("/mailboxes", "hang")   # never answers (until stop())
    stub.respond("/mailboxes", "drop")   # closes the connection without an answer
    stub.go_down(503)                    # an outage: every request gets 503 (or "drop", "hang")
    stub.come_up()                       # ...until this
    stub.reject_bodies("poison", 422)    # a body containing "poison" always gets 422
    ...
    stub.requests                        # every request, as a RecordedRequest
    stub.stop()

While down, every request gets the outage's answer. A body matching ``reject_bodies`` gets its
status. Otherwise responses queued with ``respond()`` are used once each, in order, per path; when
none is queued the stub answers ``default_status`` (201, JSON ``{"ok": true, "id": <n>}``), optionally
after ``delay`` seconds to act slow. ``fail_first(path, n, status)`` queues n failures.

Run ``python -m examples.legacy_stub --port 8080`` to keep one in the foreground.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"
DROP = "drop"
_HANG_LIMIT = 60.0  # seconds; a hung request is released by stop() or after this


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int] = ("", 0)  # the client's address: one per connection
    status: int | str = 0  # what the stub answered (or HANG, DROP)
    at: float = 0.0  # time.monotonic() when it arrived

    def json(self):
        return json.loads(self.body)


@dataclass(frozen=True)
class _Response:
    status: int | str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int] = ("", 0)  # the client's address: one per connection


class LegacyStub:
    """A threaded HTTP server on loopback that records requests and plays scripted responses."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        default_status: int = 201,
        delay: float = 0.0,
    ):
        self.default_status = default_status
        self.delay = delay
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[_Response]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.outage: int | str | None = None
        self._rejects: list[tuple[bytes, int]] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LegacyStub:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="legacy-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LegacyStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def respond(
        self,
        path: str,
        status: int | str,
        headers: dict[str, str] | None = None,
        body: bytes | str = b"",
    ) -> None:
        """Queue one response for `path`: an HTTP status, or HANG to never answer."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._scripts[path].append(_Response(status, dict(headers or {}), data))

    def go_down(self, answer: int | str = 503) -> None:
        """Every request from now on gets `answer` (a status, DROP or HANG) until come_up()."""
        self.outage = answer

    def come_up(self) -> None:
        self.outage = None

    def reject_bodies(self, marker: str, status: int = 422) -> None:
        """A request whose body contains `marker` always gets `status` (unless down)."""
        self._rejects.append((marker.encode(), status))

    def answered(self, status: int) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.status == status]

    def fail_first(self, path: str, count: int, status: int = 503) -> None:
        for _ in range(count):
            self.respond(path, status)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _next_response(self, path: str) -> _Response | None:
        with self._lock:
            script = self._scripts.get(path)
            return script.popleft() if script else None

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests)

    def _choose(self, path: str, body: bytes) -> _Response | None:
        if self.outage is not None:
            return _Response(self.outage, {}, b"")
        for marker, status in self._rejects:
            if marker in body:
                return _Response(status, {}, b"")
        return self._next_response(path)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to each answer

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                arrived = time.monotonic()
                response = stub._choose(self.path, body)
                status = response.status if response is not None else stub.default_status
                number = stub._record(
                    RecordedRequest(
                        self.command,
                        self.path,
                        dict(self.headers.items()),
                        body,
                        self.client_address[:2],
                        status,
                        arrived,
                    )
                )
                if response is None:
                    if stub.delay:
                        time.sleep(stub.delay)
                    payload = json.dumps({"ok": True, "id": number}).encode()
                    response = _Response(stub.default_status, {"Content-Type": "application/json"}, payload)
                if response.status == DROP:
                    self.close_connection = True
                    return
                if response.status == HANG:
                    stub._released.wait(_HANG_LIMIT)
                    self.close_connection = True
                    return
                self.send_response(int(response.status))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: tests and the demo print their own summaries

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local stand-in for the legacy HTTP system")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    stub = LegacyStub(port=args.port, delay=args.delay).start()
    print(f"legacy stub listening on {stub.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
