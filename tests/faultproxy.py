"""A fault-injecting HTTP proxy for an SQS endpoint, on loopback, in this process.

It forwards every request to an upstream endpoint (moto's server) and, per SQS action (the
`X-Amz-Target` header of the JSON protocol, or the `Action` field of the query protocol), can:
fail it with a status and an SQS error in the protocol's own shape, delay it, tarpit it (accept,
never answer), reset the connection without forwarding, or forward it and drop the reply. It
enforces SQS's real message size limit (body plus attributes, in UTF-8 bytes, 1 MiB), which moto
counts in characters and without attributes. The listener itself can refuse connections. It
counts requests by action. Rules can change while it runs:

    with FaultProxy(local_sqs.endpoint_url) as proxy:
        proxy.fail("ReceiveMessage", "AWS.SimpleQueueService.NonExistentQueue", status=400)
        proxy.tarpit("ReceiveMessage", times=1)
        proxy.count("ReceiveMessage")
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
import struct
import threading
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SQS_MAX_BYTES = 1024 * 1024  # SendMessage and SendMessageBatch, body plus attributes
ANY = "*"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class Rule:
    kind: str  # fail | delay | tarpit | reset | drop_reply
    times: int | None = None  # None: every matching request
    queue: str | None = None  # only requests whose QueueUrl contains this
    status: int = 500
    code: str = "InternalError"
    message: str = "injected fault"
    seconds: float = 0.0

    def matches(self, queue_url: str) -> bool:
        return self.queue is None or self.queue in queue_url


@dataclass
class Request:
    action: str
    json_protocol: bool
    params: dict[str, Any]  # JSON document, or the query form flattened to {name: value}

    @property
    def queue_url(self) -> str:
        return str(self.params.get("QueueUrl", ""))


def parse_request(headers: Any, body: bytes) -> Request:
    target = headers.get("X-Amz-Target", "")
    if target:
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        return Request(target.rpartition(".")[2], True, params if isinstance(params, dict) else {})
    form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return Request(form.get("Action", "Unknown"), False, form)


# --- SQS's size rule ----------------------------------------------------------------------------


def attribute_bytes(name: str, value: dict[str, Any]) -> int:
    size = len(name.encode()) + len(str(value.get("DataType", "")).encode())
    if "StringValue" in value:
        size += len(str(value["StringValue"]).encode())
    if "BinaryValue" in value:
        size += len(base64.b64decode(value["BinaryValue"]))
    return size


def json_entry_bytes(entry: dict[str, Any]) -> int:
    size = len(str(entry.get("MessageBody", "")).encode())
    for name, value in (entry.get("MessageAttributes") or {}).items():
        size += attribute_bytes(name, value)
    return size


def query_entry_bytes(form: dict[str, str], prefix: str) -> int:
    size = len(form.get(prefix + "MessageBody", "").encode())
    n = 1
    while (name := form.get(f"{prefix}MessageAttribute.{n}.Name")) is not None:
        value = {
            key: form[f"{prefix}MessageAttribute.{n}.Value.{key}"]
            for key in ("DataType", "StringValue", "BinaryValue")
            if f"{prefix}MessageAttribute.{n}.Value.{key}" in form
        }
        size += attribute_bytes(name, value)
        n += 1
    return size


def request_bytes(request: Request) -> list[int]:
    """Sizes of the messages a SendMessage or SendMessageBatch request carries."""
    params = request.params
    if request.action == "SendMessage":
        return [json_entry_bytes(params) if request.json_protocol else query_entry_bytes(params, "")]
    if request.json_protocol:
        return [json_entry_bytes(e) for e in params.get("Entries") or []]
    sizes, n = [], 1
    while f"SendMessageBatchRequestEntry.{n}.Id" in params:
        sizes.append(query_entry_bytes(params, f"SendMessageBatchRequestEntry.{n}."))
        n += 1
    return sizes


def size_violation(request: Request, limit: int) -> Rule | None:
    """The error real SQS gives a request over its size limit, or None."""
    if request.action not in ("SendMessage", "SendMessageBatch"):
        return None
    sizes = request_bytes(request)
    if request.action == "SendMessage" and sizes[0] > limit:
        return Rule(
            "fail",
            status=400,
            code="InvalidParameterValue",
            message="One or more parameters are invalid. "
            f"Reason: Message must be shorter than {limit} bytes.",
        )
    if request.action == "SendMessageBatch" and sum(sizes) > limit:
        return Rule(
            "fail",
            status=400,
            code="AWS.SimpleQueueService.BatchRequestTooLong",
            message=f"Batch requests cannot be longer than {limit} bytes. You have sent {sum(sizes)} bytes.",
        )
    return None


def error_reply(request: Request, rule: Rule) -> tuple[dict[str, str], bytes]:
    """Headers and body of an SQS error in the request's protocol."""
    fault = "Sender" if rule.status < 500 else "Receiver"
    request_id = str(uuid.uuid4())
    if request.json_protocol:
        body = json.dumps(
            {"__type": f"com.amazonaws.sqs#{rule.code.rpartition('.')[2]}", "message": rule.message}
        )
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-query-error": f"{rule.code};{fault}",
            "x-amzn-RequestId": request_id,
        }
        return headers, body.encode()
    body = (
        '<ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error>'
        f"<Type>{fault}</Type><Code>{rule.code}</Code><Message>{rule.message}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body.encode()


# --- the proxy ----------------------------------------------------------------------------------


class FaultProxy:
    def __init__(self, upstream: str, port: int = 0, size_limit: int | None = SQS_MAX_BYTES):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.size_limit = size_limit
        self.counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()  # requests a rule (or the size limit) answered
        self._rules: dict[str, list[Rule]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self.port = port

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stopped.clear()
        self.accept()

    def stop(self) -> None:
        self._stopped.set()  # tarpits end
        self.refuse()

    # --- the listener -----------------------------------------------------------------------

    def accept(self) -> None:
        """Listen (again, on the same port) after `refuse`."""
        if self._server is not None:
            return
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True).start()

    def refuse(self) -> None:
        """Close the listener and every open connection: connections are refused until `accept`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            open_now = list(self._connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- rules ----------------------------------------------------------------------------------

    def _add(self, action: str, rule: Rule) -> None:
        with self._lock:
            self._rules.setdefault(action, []).append(rule)

    def fail(
        self,
        action: str = ANY,
        code: str = "InternalError",
        status: int = 500,
        message: str = "injected fault",
        times: int | None = None,
        queue: str | None = None,
    ) -> None:
        self._add(action, Rule("fail", times, queue, status, code, message))

    def delay(
        self, action: str = ANY, seconds: float = 1.0, times: int | None = None, queue: str | None = None
    ) -> None:
        self._add(action, Rule("delay", times, queue, seconds=seconds))

    def tarpit(self, action: str = ANY, times: int | None = None, queue: str | None = None) -> None:
        """Read the request, then never answer (until the client gives up or the proxy stops)."""
        self._add(action, Rule("tarpit", times, queue))

    def reset(self, action: str = ANY, times: int | None = None, queue: str | None = None) -> None:
        """Close the connection without forwarding or answering."""
        self._add(action, Rule("reset", times, queue))

    def drop_reply(self, action: str = ANY, times: int | None = None, queue: str | None = None) -> None:
        """Forward the request (SQS applies it), then close the connection without the reply."""
        self._add(action, Rule("drop_reply", times, queue))

    def clear(self, action: str | None = None) -> None:
        with self._lock:
            if action is None:
                self._rules.clear()
            else:
                self._rules.pop(action, None)

    def count(self, action: str) -> int:
        with self._lock:
            return self.counts[action]

    def _take_rule(self, request: Request) -> Rule | None:
        with self._lock:
            self.counts[request.action] += 1
            for key in (request.action, ANY):
                for rule in self._rules.get(key, []):
                    if not rule.matches(request.queue_url):
                        continue
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules[key].remove(rule)
                    if rule.kind != "delay":
                        self.faults[request.action] += 1
                    return rule
        return None

    # --- serving --------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                proxy._serve(self)

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = parse_request(handler.headers, body)
        rule = self._take_rule(request)
        if rule is None and self.size_limit is not None:
            rule = size_violation(request, self.size_limit)
            if rule is not None:
                with self._lock:
                    self.faults[request.action] += 1
        if rule is not None and rule.kind == "delay":
            self._stopped.wait(rule.seconds)
            rule = None
        if rule is not None and rule.kind == "fail":
            headers, payload = error_reply(request, rule)
            self._reply(handler, rule.status, headers, payload)
            return
        if rule is not None and rule.kind == "tarpit":
            self._hold(handler.connection)
            handler.close_connection = True
            return
        if rule is not None and rule.kind == "reset":
            self._abort(handler)
            return
        try:
            status, headers, payload = self._forward(handler, body)
        except OSError:
            self._abort(handler)  # the upstream is down: the client sees a broken connection
            return
        if rule is not None and rule.kind == "drop_reply":
            self._abort(handler)
            return
        self._reply(handler, status, headers, payload)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            out = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"server", "date"}}
            return response.status, out, payload
        finally:
            conn.close()

    def _reply(
        self, handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes
    ) -> None:
        try:
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _hold(self, conn: socket.socket) -> None:
        """Never answer: wait until the client hangs up or the proxy stops."""
        while not self._stopped.is_set():
            try:
                readable, _, _ = select.select([conn], [], [], 0.2)
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    return  # the client gave up
            except (OSError, ValueError):
                return

    @staticmethod
    def _abort(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        try:  # closing with a zero linger sends RST: no reply, no orderly end
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
