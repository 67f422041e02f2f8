"""What EC2 and Auto Scaling show a daemon, on loopback: one IMDSv2 stand-in an instance (a
token from PUT /latest/api/token, then its instance id, region and target lifecycle state) and
one Auto Scaling query API stand-in for the group, which records the lifecycle actions the
daemons send (CompleteLifecycleAction, RecordLifecycleActionHeartbeat: all lifecycle.py calls)."""

from __future__ import annotations

import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Reply(BaseHTTPRequestHandler):
    def reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class Imds:
    """One instance's metadata service; `state` is what Auto Scaling says of the instance."""

    def __init__(self, instance_id: str, region: str = "us-east-1"):
        self.instance_id = instance_id
        self.state = "InService"
        self.token = secrets.token_hex(8)
        self.unauthorized = 0
        imds = self

        class Handler(_Reply):
            def do_PUT(self) -> None:  # noqa: N802
                ok = self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                )
                self.reply(200 if ok else 400, imds.token if ok else "bad token request")

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("X-aws-ec2-metadata-token") != imds.token:
                    imds.unauthorized += 1
                    self.reply(401, "")
                    return
                answers = {
                    STATE_PATH: imds.state,
                    "/latest/meta-data/instance-id": imds.instance_id,
                    "/latest/meta-data/placement/region": region,
                }
                self.reply(200, answers[self.path]) if self.path in answers else self.reply(404, "")

        self.server, self.url = _serve(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AutoScalingApi:
    """The group's lifecycle-action API: every action a daemon sends, with when it came."""

    def __init__(self) -> None:
        self.actions: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        api = self

        class Handler(_Reply):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form: dict[str, Any] = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                form["at"] = time.monotonic()
                with api._lock:
                    api.actions.append(form)
                action = form.get("Action", "")
                self.reply(
                    200,
                    f'<{action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                    f"<{action}Result/><ResponseMetadata><RequestId>r-{len(api.actions)}</RequestId>"
                    f"</ResponseMetadata></{action}Response>",
                    "text/xml",
                )

        self.server, self.url = _serve(Handler)

    def completed(self, instance_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                a
                for a in self.actions
                if a.get("Action") == "CompleteLifecycleAction" and a.get("InstanceId") == instance_id
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
