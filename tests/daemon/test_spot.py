"""Spot reclaim: the watcher reads IMDSv2 exactly as EC2 serves it and turns a notice into
a drain deadline.

The instance metadata service is a stand-in on loopback: it answers GETs only with a
token from PUT /latest/api/token, and 404 on the notice paths until a test posts one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import structlog
from structlog.testing import capture_logs

from poller.daemon.lifecycle import Imds
from poller.daemon.spot import (
    INTERRUPTION_PATH,
    REBALANCE_PATH,
    SpotWatcher,
    parse_notice,
)


class ImdsStandIn:
    def __init__(self) -> None:
        self.documents: dict[str, str] = {}
        self.gets: Counter[str] = Counter()
        self.tokens_issued = 0
        self.rejected = 0
        self.token = "token-1"
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    stand_in.tokens_issued += 1
                    self._reply(200, stand_in.token)
                else:
                    self._reply(400, "")

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("X-aws-ec2-metadata-token") != stand_in.token:
                    stand_in.rejected += 1
                    self._reply(401, "")
                    return
                stand_in.gets[self.path] += 1
                if self.path in stand_in.documents:
                    self._reply(200, stand_in.documents[self.path])
                else:
                    self._reply(404, "<html>404 - Not Found</html>")

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

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds():
    stand_in = ImdsStandIn()
    yield stand_in
    stand_in.close()


class FakeMonotonic:
    """The poll interval is the watcher's own clock; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def watcher_for(imds: ImdsStandIn, monotonic=None, **kwargs) -> SpotWatcher:
    return SpotWatcher(
        Imds(imds.url), structlog.get_logger(), monotonic=monotonic or time.monotonic, **kwargs
    )


def test_no_notice_while_imds_answers_404(imds):
    # GIVEN an instance EC2 has not told anything
    watcher = watcher_for(imds)
    # WHEN the watcher checks
    deadline = watcher.drain_deadline()
    # THEN there is nothing to drain for, and both paths were asked with a session token
    assert deadline is None
    assert imds.gets[INTERRUPTION_PATH] == 1
    assert imds.gets[REBALANCE_PATH] == 1
    assert imds.tokens_issued == 1 and imds.rejected == 0


def test_interruption_notice_bounds_the_drain_by_its_time(imds):
    # GIVEN a Spot interruption notice for 100 s from now
    reclaim_at = int(time.time()) + 100
    imds.documents[INTERRUPTION_PATH] = json.dumps({"action": "terminate", "time": iso(reclaim_at)})
    watcher = watcher_for(imds, margin_seconds=10)
    # WHEN the watcher checks
    with capture_logs() as logs:
        deadline = watcher.drain_deadline()
    # THEN the drain must end 10 s before the reclaim, measured on the monotonic clock
    assert deadline is not None
    remaining = deadline - time.monotonic()
    expected = reclaim_at - 10 - time.time()
    assert abs(remaining - expected) < 2
    assert watcher.notice.kind == "interruption" and watcher.notice.action == "terminate"
    assert [entry["event"] for entry in logs] == ["spot_notice_received"]


def test_rebalance_recommendation_gets_the_configured_bound(imds):
    # GIVEN only a rebalance recommendation (it names no deadline)
    imds.documents[REBALANCE_PATH] = json.dumps({"noticeTime": iso(time.time())})
    watcher = watcher_for(imds, rebalance_drain_seconds=90)
    # WHEN the watcher checks
    deadline = watcher.drain_deadline()
    # THEN the drain gets the configured 90 s
    assert deadline is not None
    assert abs(deadline - time.monotonic() - 90) < 2
    assert watcher.notice.kind == "rebalance"


def test_interruption_wins_over_a_rebalance_recommendation(imds):
    # GIVEN both documents at once, the interruption 60 s away
    reclaim_at = int(time.time()) + 60
    imds.documents[REBALANCE_PATH] = json.dumps({"noticeTime": iso(time.time())})
    imds.documents[INTERRUPTION_PATH] = json.dumps({"action": "stop", "time": iso(reclaim_at)})
    watcher = watcher_for(imds, rebalance_drain_seconds=120, margin_seconds=10)
    # WHEN the watcher checks
    deadline = watcher.drain_deadline()
    # THEN the earlier, fixed deadline of the interruption applies
    assert watcher.notice.kind == "interruption" and watcher.notice.action == "stop"
    assert abs(deadline - time.monotonic() - (reclaim_at - 10 - time.time())) < 2


def test_polls_at_most_every_five_seconds_and_keeps_the_first_notice(imds):
    # GIVEN a watcher on a clock the test moves
    clock = FakeMonotonic()
    watcher = watcher_for(imds, monotonic=clock)
    # WHEN it is asked three times within five seconds
    for _ in range(3):
        assert watcher.poll_notice() is None
        clock.now += 1
    # THEN IMDS was asked once
    assert imds.gets[INTERRUPTION_PATH] == 1
    # WHEN five seconds have passed and a notice has appeared meanwhile
    imds.documents[REBALANCE_PATH] = json.dumps({"noticeTime": iso(time.time())})
    clock.now += 2
    notice = watcher.poll_notice()
    # THEN it is seen on the next poll, and kept without asking IMDS again
    assert notice is not None and notice.kind == "rebalance"
    del imds.documents[REBALANCE_PATH]
    clock.now += 60
    assert watcher.poll_notice() == notice
    assert imds.gets[REBALANCE_PATH] == 2


def test_an_expired_token_is_replaced(imds):
    # GIVEN a watcher that already holds a session token
    clock = FakeMonotonic()
    watcher = watcher_for(imds, monotonic=clock)
    watcher.poll_notice()
    # WHEN IMDS stops accepting that token (a restarted IMDS, a clock jump)
    imds.token = "token-2"
    clock.now += 5
    assert watcher.poll_notice() is None
    clock.now += 5
    imds.documents[INTERRUPTION_PATH] = json.dumps({"action": "terminate", "time": iso(time.time() + 120)})
    # THEN the next poll fetches a new token and sees the notice
    assert watcher.poll_notice() is not None
    assert imds.tokens_issued == 2


def test_unreachable_imds_is_no_notice_and_no_crash():
    # GIVEN nothing listening where IMDS should be
    watcher = SpotWatcher(Imds("http://127.0.0.1:9", timeout=0.5), structlog.get_logger())
    # WHEN the watcher checks
    with capture_logs() as logs:
        deadline = watcher.drain_deadline()
    # THEN it reports no notice and says why, once
    assert deadline is None
    assert [entry["event"] for entry in logs] == ["spot_notice_unavailable"]


def test_a_notice_already_past_its_time_means_drain_now():
    # GIVEN a notice read late (its time minus the margin is behind us)
    now = time.time()
    body = json.dumps({"action": "terminate", "time": iso(now - 30)})
    # WHEN it is parsed
    notice = parse_notice("interruption", body, now, rebalance_seconds=120, margin=10)
    # THEN the deadline is now, never in the past
    assert notice.deadline == now
