"""Operators in control, end to end: the real daemon (`python -m poller run`) on moto's server,
driven by the real CLI: pause, resume, quiet, --for, the fleet's SSM parameter, status, the
permission check, and no daemon at all."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import queue_counts, send_bodies, wait_until, write_config
from tests.integration.test_daemon import run_cli
from tests.integration.test_flow import NotifySocket


def cli(config: Path, *args: str, env: dict[str, str] | None = None):
    return run_cli(*args, "--config", str(config), env=env)


def record(result) -> dict:
    """A command's JSON output (stdout is not a terminal)."""
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def status(config: Path) -> dict:
    result = cli(config, "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def queue_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def paused_gauge(daemon, name: str) -> float | None:
    return daemon.scrape().get(f'sqs_poller_queue_paused{{queue="{name}"}}')


def test_pause_stops_receiving_within_2_s_and_resume_restores_it(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon serving a queue, ready
    url, dlq = make_queues()
    name = queue_name(url)
    config = write_config(tmp_path, local_sqs, url, dlq)
    daemon = daemon_factory(config)
    daemon.wait_ready()

    # WHEN an operator pauses the queue, and messages arrive 2 s later
    paused = record(cli(config, "pause", name))
    assert paused["state"]["paused"] == {name: None} and paused["scope"] == "host"
    time.sleep(2)
    send_bodies(sqs, url, [json.dumps({"n": n}) for n in range(20)])

    # THEN nothing is handled: what a receive still out brought goes back at once
    time.sleep(4)
    assert daemon.handled() == []
    wait_until(lambda: queue_counts(sqs, url)["visible"] == 20, timeout=5)
    # AND paused is healthy and ready, and says so
    assert paused_gauge(daemon, name) == 1
    with urllib.request.urlopen(daemon.metrics_url + "/healthz", timeout=5) as r:
        assert r.status == 200 and "paused by an operator: " + name in r.read().decode()
    with urllib.request.urlopen(daemon.metrics_url + "/readyz", timeout=5) as r:
        assert r.status == 200
    logged = [r for r in daemon.logs() if r.get("event") == "control_changed"]
    assert logged[0]["command"] == "pause" and logged[0]["uid"] == os.getuid() and logged[0]["pid"] > 0

    # WHEN the operator resumes it
    resumed = record(cli(config, "resume", name))
    assert resumed["state"]["paused"] == {}

    # THEN every message is handled and deleted, and the gauge says receiving
    wait_until(lambda: len({r["body"] for r in daemon.handled()}) == 20, timeout=15)
    wait_until(lambda: sum(queue_counts(sqs, url).values()) == 0, timeout=10)
    assert paused_gauge(daemon, name) == 0
    assert daemon.stop() == 0


def test_a_pause_releases_what_is_held_but_not_started(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a batch-style daemon gathering a batch for a minute, holding 5 messages unstarted
    url, dlq = make_queues()
    name = queue_name(url)
    handler = {
        "style": "batch",
        "target": "tests.style_handlers:sized_batches",
        "batch_size": 20,
        "batch_window": 60,
    }
    workers = {"processes": 1, "concurrency": 20}
    config = write_config(tmp_path, local_sqs, url, dlq, handler=handler, workers=workers)
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, [f"m{n}" for n in range(5)])
    wait_until(lambda: queue_counts(sqs, url)["in_flight"] == 5, timeout=10)

    # WHEN the queue is paused
    record(cli(config, "pause", name))

    # THEN within 2 s the 5 are visible again, released unstarted, and never handled
    began = time.monotonic()
    wait_until(lambda: queue_counts(sqs, url)["visible"] == 5, timeout=5, interval=0.05)
    assert time.monotonic() - began < 2.5
    # (a receive out at the pause may bring them once more: released again at once)
    assert daemon.scrape()['sqs_poller_messages_total{outcome="released"}'] in (5, 10)
    assert daemon.handled() == []
    assert daemon.stop() == 0


def test_pause_for_a_duration_ends_by_itself(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a daemon, its queue paused for 4 s, and messages waiting
    url, dlq = make_queues()
    name = queue_name(url)
    config = write_config(tmp_path, local_sqs, url, dlq)
    daemon = daemon_factory(config)
    daemon.wait_ready()
    paused_at = time.time()
    out = record(cli(config, "pause", name, "--for", "4s"))
    assert out["seconds"] == 4
    send_bodies(sqs, url, [f"m{n}" for n in range(5)])

    # THEN status says until when, and nothing is handled meanwhile
    (queue,) = status(config)["queues"]
    assert queue["paused"] and not queue["receiving"] and queue["paused_until"].endswith("Z")
    time.sleep(2)
    assert daemon.handled() == []

    # AND once the 4 s are over the queue is received again without anyone asking
    wait_until(lambda: len(daemon.handled()) == 5, timeout=15)
    assert min(r["t"] for r in daemon.handled()) >= paused_at + 3.5
    wait_until(lambda: any(r.get("event") == "control_expired" for r in daemon.logs()), timeout=2)
    assert paused_gauge(daemon, name) == 0
    assert status(config)["queues"][0]["receiving"]
    assert daemon.stop() == 0


def test_quiet_stops_every_queue_and_unquiet_restores_them(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN a daemon under systemd's watchdog, quieted
    url, dlq = make_queues()
    name = queue_name(url)
    config = write_config(tmp_path, local_sqs, url, dlq)
    notify = NotifySocket()
    daemon = daemon_factory(config, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    daemon.wait_ready()
    assert record(cli(config, "quiet"))["state"]["quiet"] is True
    quiet_at = time.monotonic()
    time.sleep(2)

    # WHEN messages arrive, and an operator resumes the queue (quiet still holds)
    send_bodies(sqs, url, [f"m{n}" for n in range(5)])
    record(cli(config, "resume", name))
    time.sleep(3)

    # THEN nothing is handled, the daemon stays up and healthy, status says quiet
    assert daemon.handled() == [] and not daemon.exited()
    assert daemon.healthz() == 200
    now = status(config)
    assert now["quiet"] and now["queues"][0]["quiet"] and not now["queues"][0]["receiving"]
    assert "quiet" in now["status"]
    assert paused_gauge(daemon, name) == 1
    # AND systemd is told, and its watchdog fed meanwhile
    lines = [line for _, line in notify.received]
    assert "STATUS=ok: 2 workers polling; quiet: every queue paused by an operator" in lines, lines
    assert len([at for at, line in notify.received if line == "WATCHDOG=1" and at > quiet_at]) >= 3

    # WHEN unquiet THEN the messages are handled, and STATUS= says so
    record(cli(config, "unquiet"))
    wait_until(lambda: len(daemon.handled()) == 5, timeout=15)
    assert [line for _, line in notify.received if line.startswith("STATUS=")][
        -1
    ] == "STATUS=ok: 2 workers polling"
    assert daemon.stop() == 0
    notify.close()


def test_a_fleet_pause_reaches_every_daemon_on_the_parameter(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    # GIVEN two daemons on two hosts' configs naming one SSM parameter (moto serves SSM): one
    # finds the endpoint in [control] endpoint_url, the other in AWS_ENDPOINT_URL_SSM
    url, dlq = make_queues()
    name = queue_name(url)
    parameter = f"/sqs-poller/test/{uuid.uuid4().hex[:8]}/control"
    control = {"ssm_parameter": parameter, "poll_seconds": 1, "region": "us-east-1"}
    first = write_config(
        tmp_path, local_sqs, url, dlq, control={**control, "endpoint_url": local_sqs.endpoint_url}
    )
    second = write_config(tmp_path, local_sqs, url, dlq, control=control)
    ssm_env = {"AWS_ENDPOINT_URL_SSM": local_sqs.endpoint_url}
    daemons = [daemon_factory(first), daemon_factory(second, env=ssm_env)]
    for daemon in daemons:
        daemon.wait_ready()

    # WHEN an operator pauses the queue with --fleet from one host
    out = record(cli(first, "pause", name, "--fleet"))
    assert out["scope"] == "fleet" and out["state"]["paused"] == {name: None}
    written = json.loads(local_sqs.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"])
    assert written["paused"] == {name: None} and "uid" in written["by"]

    # THEN both daemons stop receiving within a poll and 2 s, and say so
    wait_until(lambda: all(not status(c)["queues"][0]["receiving"] for c in (first, second)), timeout=5)
    time.sleep(1)  # the workers look at the supervisor's word twice a second
    send_bodies(sqs, url, [f"m{n}" for n in range(10)])
    time.sleep(3)
    assert [d.handled() for d in daemons] == [[], []]
    assert all(paused_gauge(d, name) == 1 for d in daemons)
    fleet_logs = [r for r in daemons[1].logs() if r.get("event") == "control_changed"]
    assert fleet_logs and fleet_logs[-1]["source"] == "fleet" and "uid" in fleet_logs[-1]["by"]

    # WHEN it is resumed with --fleet THEN the messages are handled, by either
    record(cli(second, "resume", name, "--fleet", env=ssm_env))
    wait_until(lambda: len({r["body"] for d in daemons for r in d.handled()}) == 10, timeout=15)

    # WHEN it is paused on the fleet for 3 s THEN both pause, and both resume by themselves
    record(cli(first, "pause", name, "--fleet", "--for", "3s"))
    wait_until(lambda: all(not status(c)["queues"][0]["receiving"] for c in (first, second)), timeout=5)
    wait_until(lambda: all(status(c)["queues"][0]["receiving"] for c in (first, second)), timeout=8)
    for daemon in daemons:
        assert daemon.stop() == 0


def test_status_reports_queues_and_workers(local_sqs, sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a daemon with two workers: 30 quick messages handled, then 2 that run for 6 s
    url, dlq = make_queues()
    name = queue_name(url)
    config = write_config(tmp_path, local_sqs, url, dlq, handler={"target": "tests.sample_handlers:slow"})
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, [json.dumps({"sleep": 0}) for _ in range(30)])
    wait_until(lambda: len([r for r in daemon.handled() if r.get("phase") == "end"]) == 30, timeout=20)
    send_bodies(sqs, url, [json.dumps({"sleep": 6}) for _ in range(2)])
    wait_until(lambda: len([r for r in daemon.handled() if r.get("phase") == "start"]) == 32, timeout=10)
    time.sleep(2)

    # WHEN an operator asks for the status
    now = status(config)

    # THEN it names the queue: receiving, its counts and what runs, the oldest for ~2 s
    (queue,) = now["queues"]
    assert queue["name"] == name and queue["receiving"] and not queue["paused"] and not queue["quiet"]
    assert queue["breaker"] == "closed"
    assert queue["received"] == 32 and queue["handled"] == 30
    assert queue["in_flight"] == 2
    assert 1.0 <= queue["oldest_running_seconds"] <= 5
    assert queue["received_per_second"] >= 0 and queue["handled_per_second"] >= 0
    # AND each worker: its pid, what it holds, memory, uptime, what it handled
    workers = now["workers"]
    assert sorted(w["pid"] for w in workers) == sorted(daemon.worker_pids())
    assert sum(w["handled"] for w in workers) == 30 and sum(w["in_flight"] for w in workers) == 2
    assert all(w["rss_mb"] > 10 and w["uptime_seconds"] > 2 for w in workers)
    assert now["pid"] == daemon.proc.pid and now["status"].startswith("ok")

    # AND paused, it says so; the human table names the queue and its state
    record(cli(config, "pause", name))
    assert status(config)["queues"][0]["paused"] is True
    table = cli(config, "status")
    assert table.returncode == 0 and name in table.stdout and "paused" in table.stdout
    assert str(workers[0]["pid"]) in table.stdout
    assert daemon.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="running the CLI as another user (setpriv) needs root")
def test_only_root_or_the_daemons_user_may_control_it(local_sqs, make_queues, tmp_path, daemon_factory):
    # GIVEN a daemon (run as root here) whose config another user can read
    url, dlq = make_queues()
    shared = Path(tempfile.mkdtemp(prefix="sqs-poller-perm-"))
    shared.chmod(0o755)
    path = f"{shared}/control.sock"
    config = write_config(shared, local_sqs, url, dlq, control={"socket": path})
    config.chmod(0o644)
    daemon = daemon_factory(config)
    daemon.wait_ready()
    assert os.stat(path).st_mode & 0o777 == 0o600
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    def as_nobody(*args: str):
        import subprocess
        import sys

        from tests.conftest import REPO

        command = [*nobody, sys.executable, "-m", "poller", *args, "--config", str(config)]
        env = {**os.environ, "HOME": "/nonexistent"}
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=30)

    # WHEN nobody asks to pause the queue THEN the socket's permissions refuse it, saying who may
    refused = as_nobody("pause", queue_name(url))
    assert refused.returncode == 1
    assert "permission denied" in refused.stderr and "only root or the daemon's user (root" in refused.stderr

    # WHEN the socket's mode is loosened by mistake THEN the daemon still refuses (SO_PEERCRED)
    os.chmod(path, 0o666)
    refused = as_nobody("quiet")
    assert refused.returncode == 1
    assert "uid 65534" in refused.stderr and "may not control this daemon" in refused.stderr
    assert [r["uid"] for r in daemon.logs() if r.get("event") == "control_refused"] == [65534]
    # AND nothing changed: the queue is still received
    assert status(config)["queues"][0]["receiving"]
    assert daemon.stop() == 0


def test_no_daemon_and_an_unknown_queue_are_clear_errors(local_sqs, make_queues, tmp_path):
    # GIVEN a config whose daemon is not running
    url, dlq = make_queues()
    config = write_config(tmp_path, local_sqs, url, dlq)

    # WHEN an operator pauses its queue, or asks for the status THEN: no daemon runs, exit 1
    for args in (("pause", queue_name(url)), ("status",), ("quiet",)):
        result = cli(config, *args)
        assert result.returncode == 1, result.stderr
        assert "no sqs-poller daemon is running for this config" in result.stderr

    # WHEN a daemon that died left its socket behind THEN: nothing listens, exit 1
    path = tmp_path / "stale.sock"
    stale = write_config(tmp_path, local_sqs, url, dlq, control={"socket": str(path)})
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    result = cli(stale, "resume", queue_name(url))
    assert result.returncode == 1 and "nothing listens on" in result.stderr

    # WHEN the queue name is not the config's THEN exit 2, listing the queues there are
    result = cli(config, "pause", "no-such-queue")
    assert result.returncode == 2
    assert "no queue named 'no-such-queue'" in result.stderr and queue_name(url) in result.stderr
    # AND a duration that is not one is a usage error
    result = cli(config, "pause", queue_name(url), "--for", "soon")
    assert result.returncode == 2 and "90s, 15m, 2h" in result.stderr


TMUX = ["tmux", "-L", f"sqs-poller-test-{os.getpid()}", "-f", "/dev/null"]  # a server of our own


def tmux(*args: str) -> str:
    import subprocess

    return subprocess.run([*TMUX, *args], capture_output=True, text=True, timeout=10, check=True).stdout


def test_top_shows_the_daemon_live_in_a_terminal_and_q_quits(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    import shlex
    import shutil
    import sys

    from tests.conftest import REPO

    assert shutil.which("tmux"), "tmux is needed: make deploy-tools installs it"
    # GIVEN a daemon handling messages
    url, dlq = make_queues()
    name = queue_name(url)
    config = write_config(tmp_path, local_sqs, url, dlq)
    daemon = daemon_factory(config)
    daemon.wait_ready()
    send_bodies(sqs, url, [f"m{n}" for n in range(10)])
    wait_until(lambda: len(daemon.handled()) == 10, timeout=15)

    # WHEN an operator runs `sqs-poller top` in a real terminal (tmux, 120x40)
    session = f"top-{uuid.uuid4().hex[:8]}"
    top = shlex.join([sys.executable, "-m", "poller", "top", "--config", str(config)])
    # (COLUMNS and LINES from pytest's environment would override the terminal's own size)
    script = (
        f"unset COLUMNS LINES; cd {shlex.quote(str(REPO))} && {top}; echo TOP-EXITED-$?; stty -a; sleep 60"
    )
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", script)
    try:
        screen = screen_with(session, "workers", timeout=15)
        # THEN it shows the queue receiving and every worker, and redraws as things change
        assert name in screen and "receiving" in screen and "q quits" in screen
        for pid in daemon.worker_pids():
            assert str(pid) in screen
        record(cli(config, "pause", name))
        screen_with(session, "paused", timeout=5)

        # WHEN q is pressed THEN it exits 0 and the terminal is back in canonical mode, echoing
        tmux("send-keys", "-t", session, "q")
        after = screen_with(session, "TOP-EXITED", timeout=5)
        assert "TOP-EXITED-0" in after
        modes = after.split("TOP-EXITED-0", 1)[1].split()
        assert "icanon" in modes and "echo" in modes
    finally:
        subprocess_run_quietly([*TMUX, "kill-server"])
    assert daemon.stop() == 0


def screen_with(session: str, text: str, timeout: float) -> str:
    """The tmux pane's text once it shows `text`."""

    def screen() -> str:
        shown = tmux("capture-pane", "-p", "-t", session)
        return shown if text in shown else ""

    return wait_until(screen, timeout=timeout)


def subprocess_run_quietly(command: list[str]) -> None:
    import subprocess

    subprocess.run(command, capture_output=True, timeout=10)


def test_pausing_one_of_two_queues_leaves_the_other_running(
    local_sqs, sqs, make_queues, tmp_path, daemon_factory
):
    from tests.conftest import write_queues_config

    # GIVEN a daemon serving two queues, both receiving
    (a, a_dlq), (b, b_dlq) = make_queues(), make_queues()
    handler = {"target": "tests.model_handlers:tagged"}
    queues = {
        "orders": {"url": a, "dlq_url": a_dlq, "handler": handler},
        "mailbox": {"url": b, "dlq_url": b_dlq, "handler": handler},
    }
    config = write_queues_config(tmp_path, local_sqs, queues)
    daemon = daemon_factory(config)
    daemon.wait_ready()

    # WHEN orders is paused, and both queues get traffic
    record(cli(config, "pause", "orders"))
    send_bodies(sqs, a, [f"o{n}" for n in range(5)])
    send_bodies(sqs, b, [f"m{n}" for n in range(5)])

    # THEN mailbox's messages are handled, none of orders'
    wait_until(lambda: queue_counts(sqs, b) == {"visible": 0, "in_flight": 0, "delayed": 0}, timeout=15)
    time.sleep(1)
    assert {r["body"] for r in daemon.handled()} == {f"m{n}" for n in range(5)}
    wait_until(lambda: queue_counts(sqs, a)["visible"] == 5, timeout=5)
    # AND status, the gauge and STATUS= name the one paused
    by_name = {q["name"]: q for q in status(config)["queues"]}
    assert not by_name["orders"]["receiving"] and by_name["mailbox"]["receiving"]
    assert by_name["mailbox"]["handled"] == 5 and by_name["orders"]["handled"] == 0
    assert by_name["orders"]["breaker"] == by_name["mailbox"]["breaker"] == "closed"
    assert (paused_gauge(daemon, "orders"), paused_gauge(daemon, "mailbox")) == (1, 0)

    # WHEN orders is resumed THEN its messages are handled too
    record(cli(config, "resume", "orders"))
    wait_until(lambda: queue_counts(sqs, a) == {"visible": 0, "in_flight": 0, "delayed": 0}, timeout=15)
    assert daemon.stop() == 0
