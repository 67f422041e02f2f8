"""moto's SQS server in its own process, counting every request it serves by the access key id
in the request's SigV4 Authorization header, so each consumer's SQS calls are counted by the
server, not by the consumer. `GET /__peers/counts` returns {key: {action: n}}.

`python -m bench.peers.server PORT` serves until its parent goes away or SIGTERM.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from typing import Any

from bench.server import MotoProcess

COUNTS_PATH = "/__peers/counts"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


class CountingApp:
    """WSGI middleware: one count per request, by (access key id, SQS action)."""

    def __init__(self, app: Any):
        self.app = app
        self.lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            with self.lock:
                body = json.dumps({k: dict(v) for k, v in self.counts.items()}).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        key = _access_key(environ)
        action = _action(environ)
        with self.lock:
            self.counts[key][action] += 1
        return self.app(environ, start_response)


def _access_key(environ: dict[str, Any]) -> str:
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        return match.group(1)
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))  # presigned query auth
    credential = query.get("X-Amz-Credential", [""])[0]
    return credential.split("/")[0] or "anonymous"


def _action(environ: dict[str, Any]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # JSON protocol: AmazonSQS.ReceiveMessage
        return target.rpartition(".")[2]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return "other"


def serve(port: int) -> None:
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from poller.dev.localsqs import make_receives_atomic

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    make_receives_atomic()
    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    parent = os.getppid()
    while os.getppid() == parent:  # ends with the bench, whatever way it ends
        time.sleep(0.5)
    server.shutdown()


class CountingMoto(MotoProcess):
    """The counting server as a child process: start(), counts(), stop()."""

    module = "bench.peers.server"

    def ready(self) -> None:
        self.counts()

    def counts(self) -> dict[str, dict[str, int]]:
        with urllib.request.urlopen(self.endpoint_url + COUNTS_PATH, timeout=10) as response:
            return json.loads(response.read())

    def requests_by(self, key: str) -> dict[str, int]:
        return self.counts().get(key, {})


if __name__ == "__main__":
    serve(int(sys.argv[1]))
