"""A daemon that stopped for good is reported unhealthy, so Auto Scaling replaces the
instance (it would otherwise stay InService and count in the backlog math).

`python -m poller.ops.unhealthy` runs as systemd would run it from the daemon unit's
OnFailure=: with the failed unit's MONITOR_* variables. IMDSv2 and the Auto Scaling query
API are one stand-in on loopback that records every action it is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "imds-token"


class StandIn:
    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802
                ok = self.path == "/latest/api/token"
                self._reply(200 if ok else 400, TOKEN if ok else "")

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._reply(401, "")
                    return
                answers = {
                    "/latest/meta-data/instance-id": "i-0abc123def4567890",
                    "/latest/meta-data/placement/region": "us-east-1",
                }
                self._reply(200 if self.path in answers else 404, answers.get(self.path, ""))

            def do_POST(self) -> None:  # noqa: N802 - the Auto Scaling query API
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                stand_in.actions.append(form)
                action = form.get("Action", "")
                self._reply(
                    200,
                    f'<{action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                    f"<{action}Result/><ResponseMetadata><RequestId>r</RequestId>"
                    f"</ResponseMetadata></{action}Response>",
                )

            def _reply(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.server.shutdown()
    server.server.server_close()


def run_on_failure(stand_in: StandIn, result: str, exit_code: str, exit_status: str):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MONITOR_UNIT": "sqs-poller@jobs.service",
        "MONITOR_SERVICE_RESULT": result,
        "MONITOR_EXIT_CODE": exit_code,
        "MONITOR_EXIT_STATUS": exit_status,
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "poller.ops.unhealthy",
            "--imds-url",
            stand_in.url,
            "--endpoint-url",
            stand_in.url,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("result", "exit_code", "exit_status"),
    [
        ("exit-code", "exited", "2"),  # bad config
        ("exit-code", "exited", "3"),  # handler cannot be loaded
        ("start-limit-hit", "", ""),  # a crash loop systemd gave up on
    ],
)
def test_a_daemon_stopped_for_good_marks_the_instance_unhealthy(stand_in, result, exit_code, exit_status):
    # GIVEN the daemon unit failed in a way systemd will not restart
    # WHEN its OnFailure= unit runs
    completed = run_on_failure(stand_in, result, exit_code, exit_status)
    # THEN Auto Scaling is told this instance is unhealthy, at once
    assert completed.returncode == 0, completed.stderr
    assert stand_in.actions == [
        {
            "Action": "SetInstanceHealth",
            "Version": "2011-01-01",
            "InstanceId": "i-0abc123def4567890",
            "HealthStatus": "Unhealthy",
            "ShouldRespectGracePeriod": "false",
        }
    ]
    assert '"event": "instance_reported_unhealthy"' in completed.stdout


@pytest.mark.parametrize(
    ("result", "exit_code", "exit_status"),
    [("exit-code", "exited", "1"), ("watchdog", "killed", "ABRT"), ("signal", "killed", "KILL")],
)
def test_a_failure_systemd_restarts_leaves_the_instance_alone(stand_in, result, exit_code, exit_status):
    # GIVEN a failure Restart=on-failure recovers from
    completed = run_on_failure(stand_in, result, exit_code, exit_status)
    # THEN nothing is reported
    assert completed.returncode == 0, completed.stderr
    assert stand_in.actions == []
    assert '"event": "instance_left_healthy"' in completed.stdout


def test_an_unreachable_auto_scaling_api_fails_the_unit_loudly(stand_in):
    # GIVEN IMDS answers but the Auto Scaling endpoint does not
    env_url = stand_in.url
    stand_in.url = "http://127.0.0.1:9"
    completed = subprocess.run(
        [sys.executable, "-m", "poller.ops.unhealthy", "--imds-url", env_url, "--endpoint-url", stand_in.url],
        env={
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "MONITOR_SERVICE_RESULT": "exit-code",
            "MONITOR_EXIT_CODE": "exited",
            "MONITOR_EXIT_STATUS": "2",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN the unit fails and the journal says what went wrong
    assert completed.returncode == 1
    assert '"event": "instance_unhealthy_report_failed"' in completed.stdout
