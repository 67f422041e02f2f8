"""Graceful scale-in: the daemon watches IMDSv2's target lifecycle state, drains on
`Terminated`, and completes the Auto Scaling lifecycle action (CONTINUE).

The instance metadata service and the Auto Scaling API are played by one local stand-in:
IMDSv2 answers only with a token from PUT /latest/api/token; the Auto Scaling query API
records every action it is sent (moto's server does not implement lifecycle actions).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import queue_counts, send_bodies, wait_until, write_config

TOKEN = "imds-token-123"


class StandIn:
    def __init__(self) -> None:
        self.state = "InService"
        self.spot_action = ""  # JSON of a Spot interruption notice, once there is one
        self.actions: list[dict[str, str]] = []
        self.unauthorized = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._reply(200, TOKEN)
                else:
                    self._reply(400, "bad token request")

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    stand_in.unauthorized += 1
                    self._reply(401, "")
                    return
                answers = {
                    "/latest/meta-data/autoscaling/target-lifecycle-state": stand_in.state,
                    "/latest/meta-data/instance-id": "i-0abc123def4567890",
                    "/latest/meta-data/placement/region": "us-east-1",
                }
                if stand_in.spot_action:
                    answers["/latest/meta-data/spot/instance-action"] = stand_in.spot_action
                if self.path in answers:
                    self._reply(200, answers[self.path])
                else:
                    self._reply(404, "")

            def do_POST(self) -> None:  # noqa: N802 - the Auto Scaling query API
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                stand_in.actions.append(form)
                action = form.get("Action", "")
                xml = (
                    f'<{action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
                    f"<{action}Result/><ResponseMetadata><RequestId>r-1</RequestId>"
                    f"</ResponseMetadata></{action}Response>"
                )
                self._reply(200, xml, "text/xml")

            def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_terminating_instance_drains_then_completes_the_lifecycle_action(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    stand_in = StandIn()
    try:
        # GIVEN a daemon with [lifecycle] enabled, running slow messages
        url, dlq = make_queues()
        send_bodies(sqs, url, [json.dumps({"sleep": 3, "n": n}) for n in range(6)])
        config = write_config(
            tmp_path,
            local_sqs,
            url,
            dlq,
            handler={"target": "tests.sample_handlers:slow"},
            workers={"processes": 1, "concurrency": 2, "shutdown_grace": 20},
            lifecycle={
                "enabled": True,
                "asg_name": "jobs-asg",
                "hook_name": "drain",
                "imds_url": stand_in.url,
                "endpoint_url": stand_in.url,
                "poll_seconds": 1,
                "heartbeat_seconds": 1,
            },
        )
        daemon = daemon_factory(config)
        wait_until(lambda: len(daemon.handled()) >= 2, timeout=30)

        # WHEN Auto Scaling marks the instance for termination
        stand_in.state = "Terminated"

        # THEN the daemon drains as on SIGTERM: in-flight work finishes, the rest stays queued
        wait_until(daemon.exited, timeout=40)
        assert daemon.proc.returncode == 0, daemon.text()
        runs = daemon.handled()
        started = [r for r in runs if r["phase"] == "start"]
        assert len([r for r in runs if r["phase"] == "end"]) == len(started)
        assert queue_counts(sqs, url)["visible"] == 6 - len(started)
        assert queue_counts(sqs, url)["in_flight"] == 0
        # AND completes the lifecycle action for this instance, hook and group, with CONTINUE
        completes = [a for a in stand_in.actions if a.get("Action") == "CompleteLifecycleAction"]
        assert completes == [
            {
                "Action": "CompleteLifecycleAction",
                "Version": "2011-01-01",
                "LifecycleActionResult": "CONTINUE",
                "LifecycleHookName": "drain",
                "AutoScalingGroupName": "jobs-asg",
                "InstanceId": "i-0abc123def4567890",
            }
        ]
        # AND heartbeats kept the action alive while the drain ran
        actions = [a["Action"] for a in stand_in.actions]
        assert "RecordLifecycleActionHeartbeat" in actions
        assert actions[-1] == "CompleteLifecycleAction"
        events = [r.get("event") for r in daemon.logs()]
        assert "lifecycle_terminating" in events and "lifecycle_completed" in events
        assert stand_in.unauthorized == 0  # every metadata read carried the IMDSv2 token
    finally:
        stand_in.close()


def test_a_spot_interruption_notice_drains_within_its_deadline(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    import time
    from datetime import UTC, datetime, timedelta

    stand_in = StandIn()
    try:
        # GIVEN a Spot instance's daemon with [lifecycle] spot on, running 4 s messages
        url, dlq = make_queues()
        send_bodies(sqs, url, [json.dumps({"sleep": 4, "n": n}) for n in range(8)])
        config = write_config(
            tmp_path,
            local_sqs,
            url,
            dlq,
            handler={"target": "tests.sample_handlers:slow"},
            workers={"processes": 1, "concurrency": 2, "shutdown_grace": 60},
            lifecycle={"spot": True, "imds_url": stand_in.url, "poll_seconds": 1},
        )
        daemon = daemon_factory(config)
        wait_until(lambda: any(r["phase"] == "start" for r in daemon.handled()), timeout=30)

        # WHEN EC2 posts an interruption notice for 25 s from now (IMDSv2, 404 until then)
        when = datetime.now(tz=UTC) + timedelta(seconds=25)
        stand_in.spot_action = json.dumps(
            {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        )
        noticed = time.monotonic()

        # THEN it drains as on SIGTERM, well before the notice's time, losing nothing
        wait_until(daemon.exited, timeout=40)
        assert daemon.proc.returncode == 0, daemon.text()
        assert time.monotonic() - noticed < 25
        runs = daemon.handled()
        started = [r for r in runs if r["phase"] == "start"]
        assert len([r for r in runs if r["phase"] == "end"]) == len(started)
        assert queue_counts(sqs, url)["visible"] == 8 - len(started)
        drained = [r for r in daemon.logs() if r.get("event") == "lifecycle_terminating"]
        assert drained and drained[0]["reason"] == "spot interruption"
        assert stand_in.unauthorized == 0
    finally:
        stand_in.close()


def test_a_scale_in_drain_waits_for_its_long_polls_so_no_message_is_hidden_by_an_abandoned_one(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    import time

    stand_in = StandIn()
    try:
        # GIVEN an idle daemon with [lifecycle] enabled: its worker's 20-s long poll is out
        url, dlq = make_queues()
        config = write_config(
            tmp_path,
            local_sqs,
            url,
            dlq,
            queue={"wait_time_seconds": 20, "visibility_timeout": 60},
            workers={"processes": 1, "concurrency": 2, "shutdown_grace": 10},
            lifecycle={
                "enabled": True,
                "asg_name": "jobs-asg",
                "hook_name": "drain",
                "imds_url": stand_in.url,
                "endpoint_url": stand_in.url,
                "poll_seconds": 1,
                "heartbeat_seconds": 5,
            },
        )
        daemon = daemon_factory(config)
        daemon.wait_ready()
        time.sleep(1.0)  # the poll is out, with most of its 20 s to go

        # WHEN Auto Scaling terminates the instance and, while the drain runs, a message arrives
        stand_in.state = "Terminated"
        wait_until(lambda: any(r.get("event") == "lifecycle_terminating" for r in daemon.logs()), timeout=10)
        time.sleep(0.5)
        send_bodies(sqs, url, ['{"n": 1}'])

        # THEN the drain ends cleanly, and the message is not held by a poll nobody waits for:
        # it was handled, or released at once (visible again), never hidden for its 60 s
        wait_until(daemon.exited, timeout=40)
        assert daemon.proc.returncode == 0, daemon.text()
        handled = [r for r in daemon.handled() if r["phase"] == "end"]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and queue_counts(sqs, url)["in_flight"]:
            time.sleep(0.2)
        counts = queue_counts(sqs, url)
        assert (counts["in_flight"], counts["visible"] + len(handled)) == (0, 1), counts
        assert [a["Action"] for a in stand_in.actions][-1] == "CompleteLifecycleAction"
    finally:
        stand_in.close()
