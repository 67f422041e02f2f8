"""Shared fixtures: a real SQS-compatible server on loopback (moto; LocalStack or fauxqs with
`--sqs-server`, see tests/servers.py), queues, and the daemon run as a real process
(`python -m poller run`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poller.dev.localsqs import LocalSqs, create_queue_pair, free_port, use_fake_credentials
from tests import servers

REPO = Path(__file__).resolve().parent.parent

use_fake_credentials()


def wait_until(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1) -> Any:
    """Poll until predicate() is truthy; return its value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def pytest_addoption(parser: pytest.Parser) -> None:
    servers.add_option(parser)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    servers.apply_markers(config, items)


@pytest.fixture(scope="session")
def local_sqs(request: pytest.FixtureRequest) -> Iterator[LocalSqs]:
    """The SQS server of this run (`--sqs-server`, default moto), one per test process."""
    with servers.make_server(request.config.getoption("--sqs-server")) as server:
        yield server


@pytest.fixture
def sqs(local_sqs: LocalSqs) -> Any:
    return local_sqs.client()


@pytest.fixture
def make_queues(sqs: Any) -> Callable[..., tuple[str, str]]:
    """make_queues(fifo=False, max_receive_count=10, visibility=30) -> (url, dlq_url)."""

    def make(fifo: bool = False, max_receive_count: int = 10, visibility: int = 30) -> tuple[str, str]:
        name = f"t-{uuid.uuid4().hex[:12]}"
        return create_queue_pair(sqs, name, fifo, max_receive_count, visibility)

    return make


def queue_counts(sqs: Any, url: str) -> dict[str, int]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {
        "visible": int(attrs[names[0]]),
        "in_flight": int(attrs[names[1]]),
        "delayed": int(attrs[names[2]]),
    }


def queue_total(sqs: Any, url: str) -> int:
    return sum(queue_counts(sqs, url).values())


def receive_all(sqs: Any, url: str, wait: int = 1, visibility: int = 60) -> list[dict[str, Any]]:
    """Receive (and hide) every message on a queue, with attributes."""
    out: list[dict[str, Any]] = []
    empty = 0
    while empty < 2:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        out += got
        empty = 0 if got else empty + 1
    return out


def send_bodies(sqs: Any, url: str, bodies: list[str], group_id: str | None = None, **attrs: str) -> None:
    for start in range(0, len(bodies), 10):
        entries = []
        for n, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": body}
            if attrs:
                entry["MessageAttributes"] = {
                    k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()
                }
            if group_id:
                entry["MessageGroupId"] = group_id
                entry["MessageDeduplicationId"] = uuid.uuid4().hex
            entries.append(entry)
        response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]


def write_config(directory: Path, local: LocalSqs, url: str, dlq_url: str, **sections: dict) -> Path:
    """A TOML config for the local server; `sections` override keys, e.g. workers={...}."""
    base: dict[str, dict[str, Any]] = {
        "queue": {
            "url": url,
            "dlq_url": dlq_url,
            "endpoint_url": local.endpoint_url,
            "region": "us-east-1",
            "wait_time_seconds": 1,
            "visibility_timeout": 30,
            "max_receives": 5,
        },
        "retry": {"backoff_base": 1.0, "backoff_max": 30},
        "workers": {"processes": 2, "concurrency": 10, "shutdown_grace": 10},
        "handler": {"target": "tests.sample_handlers:noop", "timeout": 60},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "logging": {"level": "debug", "format": "json"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    path = directory / f"poller-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(to_toml(base))
    return path


def write_queues_config(
    directory: Path, local: LocalSqs, queues: dict[str, dict[str, Any]], **sections: dict
) -> Path:
    """A config of [queues.NAME] tables: `queues` maps NAME to its keys (url, dlq_url, a nested
    handler = {...}, flow = {...}, priority...); `sections` override the other sections."""
    base: dict[str, dict[str, Any]] = {
        "retry": {"backoff_base": 1.0, "backoff_max": 30},
        "workers": {"processes": 1, "concurrency": 10, "shutdown_grace": 10},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "logging": {"level": "debug", "format": "json"},
    }
    for name, keys in queues.items():
        queue = {"endpoint_url": local.endpoint_url, "region": "us-east-1", "wait_time_seconds": 1}
        base[f"queues.{name}"] = {**queue, "max_receives": 5, "visibility_timeout": 30, **keys}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    path = directory / f"poller-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(to_toml(base))
    return path


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        nested = {}
        for key, value in values.items():
            if isinstance(value, dict):
                nested[key] = value
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        for key, table in nested.items():
            lines.append(f"[{name}.{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children of any of its threads, and theirs)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = list(map(int, Path(f"/proc/{current}/task/{task}/children").read_text().split()))
            except OSError:
                continue
            found += children
            todo += children
    return found


class Daemon:
    """`python -m poller run` as a child process, with its output in files."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str] | None = None):
        self.config = config
        self.records = workdir / f"records-{uuid.uuid4().hex[:6]}.jsonl"
        self.records.touch()
        self.out = workdir / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self.env = {**os.environ, "RECORD_FILE": str(self.records), **(env or {})}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        self._fh = open(self.out, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poller", "run", "--config", str(self.config)],
            cwd=REPO,
            env=self.env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        wait_until(lambda: any(r.get("event") == "ready" for r in self.logs()) or self.exited(), timeout)
        assert not self.exited(), self.text()

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._fh.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in self.worker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        pids = []
        for pid in descendants(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"poller.daemon.boot" in cmdline:  # launch.BOOT
                pids.append(pid)
        return pids

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def handled(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.records.read_text().splitlines() if line]

    @property
    def metrics_url(self) -> str:
        import tomllib

        listen = tomllib.loads(self.config.read_text())["metrics"]["listen"]
        return f"http://{listen}"

    def scrape(self) -> dict[str, float]:
        """The /metrics page as {'name{labels}': value}."""
        with urllib.request.urlopen(self.metrics_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        return parse_metrics(text)

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(self.metrics_url + "/healthz", timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


def parse_metrics(text: str) -> dict[str, float]:
    """Every series, and each per-queue series summed over its queues (the `queue` label left
    out): what a one-queue test reads."""
    from poller.daemon.metrics import metric_values

    return metric_values(text)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(config, tmp_path, env).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
