"""The consumers side by side: where each is installed, how it is started, and the wire format
its producer would write. The producer here is always the bench's own paced boto3 loop (the
same batches of ten for everyone), so each peer's body is built by hand in its own format."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
VENVS = Path(os.environ.get("BENCH_PEERS_VENVS", REPO / ".venv-peers"))  # install.sh makes them

# (body, message attributes) for one payload {"t": send time, "n": sequence number}
Encoder = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


def plain_json(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return json.dumps(payload), {}


def celery_body(queue_name: str) -> Encoder:
    """Celery task protocol 2 inside kombu's envelope, base64 twice (kombu's SQS default)."""
    return lambda payload: _celery_body(queue_name, payload)


def _celery_body(queue_name: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    task_id = str(uuid.uuid4())
    args = json.dumps([[payload], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    envelope = {
        "body": base64.b64encode(args.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": "bench.handle",
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": repr((payload,)),
            "kwargsrepr": "{}",
            "origin": "bench",
            "ignore_result": False,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": str(uuid.uuid4()),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue_name},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return base64.b64encode(json.dumps(envelope).encode()).decode(), {}


def dramatiq_body(queue_name: str) -> Encoder:
    """dramatiq's message as JSON, base64 (dramatiq-sqs's enqueue)."""

    def encode(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        message = {
            "queue_name": queue_name,
            "actor_name": "handle",
            "args": [payload],
            "kwargs": {},
            "options": {},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": int(payload["t"] * 1000),
        }
        return base64.b64encode(json.dumps(message, separators=(",", ":")).encode()).decode(), {}

    return encode


def sqs_workers_body(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """sqs-workers' JSON codec: the kwargs as the body, job name and codec as attributes."""

    def text(value: str) -> dict[str, str]:
        return {"DataType": "String", "StringValue": value}

    return json.dumps(payload), {
        "ContentType": text("json"),
        "JobContext": text("{}"),
        "JobName": text("handle"),
    }


def pyqs_body(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return json.dumps({"task": "pyqs_tasks.handle", "args": [], "kwargs": payload}), {}


@dataclass(frozen=True)
class Target:
    """Where one run's consumer reads: its queue, the server, a folder for its files."""

    url: str
    name: str
    dlq_url: str
    endpoint: str
    workdir: Path


@dataclass
class Peer:
    """One column of the comparison. `venv` None: the repo's own virtualenv (sys.executable)."""

    name: str
    venv: str | None
    command: Callable[[str, Target], list[str]]  # (python, where) -> argv
    encoder: Callable[[str], Encoder]  # queue name -> encoder
    needs: str  # what it took to run here, for the README
    settings: str  # the settings that differ from the peer's defaults, and why
    env: dict[str, str] = field(default_factory=dict)
    processes: int = 1

    def python(self) -> Path:
        if self.venv is None:
            import sys

            return Path(sys.executable)
        return VENVS / self.venv / "bin" / "python"

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or None."""
        if self.venv is None:
            return None
        failed = VENVS / f"{self.venv}.failed"
        if failed.exists():
            return "did not install: " + " ".join(failed.read_text().split()[-40:])
        if not (VENVS / self.venv / ".installed").exists():
            return f"not installed: bench/peers/install.sh makes .venv-peers/{self.venv}"
        return None


def _poller_command(processes: int) -> Callable[[str, Target], list[str]]:
    def command(python: str, where: Target) -> list[str]:
        config = where.workdir / f"poller-{processes}-{uuid.uuid4().hex[:6]}.toml"
        config.write_text(poller_config(where, processes))
        return [python, "-m", "poller", "run", "--config", str(config)]

    return command


def poller_config(where: Target, processes: int) -> str:
    """The `make bench` config: message style, concurrency 10, metrics on, JSON logs at info."""
    from poller.dev.localsqs import free_port

    return "\n".join(
        [
            "[queue]",
            f'url = "{where.url}"',
            f'dlq_url = "{where.dlq_url}"',
            f'endpoint_url = "{where.endpoint}"',
            'region = "us-east-1"',
            "wait_time_seconds = 20",
            "visibility_timeout = 30",
            "max_receives = 5",
            "[workers]",
            f"processes = {processes}",
            "concurrency = 10",
            "shutdown_grace = 5",
            "[handler]",
            'target = "bench_record:handle_message"',
            "timeout = 60",
            "[metrics]",
            f'listen = "127.0.0.1:{free_port()}"',
            "[logging]",
            'level = "info"',
            'format = "json"',
            "",
        ]
    )


PEERS = [
    Peer(
        "bare boto3 loop",
        None,
        lambda py, where: [py, str(APPS / "bare.py"), where.url],
        lambda _: plain_json,
        "boto3 (the repo's virtualenv)",
        "receive 10, all attributes, long poll 20 s, delete_message_batch",
    ),
    Peer(
        "sqs-poller 1 process",
        None,
        _poller_command(1),
        lambda _: plain_json,
        "this repo (`python -m poller run --config`)",
        "processes = 1, concurrency = 10, metrics on, JSON logs at info (the `make bench` config)",
    ),
    Peer(
        "sqs-poller 2 processes",
        None,
        _poller_command(2),
        lambda _: plain_json,
        "this repo (`python -m poller run --config`)",
        "processes = 2 (the default), otherwise as above",
        processes=2,
    ),
    Peer(
        "Celery (SQS broker)",
        "celery",
        lambda py, where: [
            py,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "-Q",
            where.name,
            "--concurrency",
            "1",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        celery_body,
        "celery[sqs] (kombu's SQS transport; pycurl installs from its wheel, libcurl included)",
        "prefork pool, --concurrency 1; polling_interval 0 and worker_prefetch_multiplier 10 "
        "(the defaults, 1 s and 4, cannot keep up with 50 msg/s); predefined queue; long poll 20 s; "
        "all attributes; "
        "gossip/mingle/heartbeat/remote control off (they need broadcast queues SQS lacks)",
    ),
    Peer(
        "dramatiq (dramatiq-sqs)",
        "dramatiq",
        lambda py, where: [py, "-m", "dramatiq", "dramatiq_app", "--processes", "1", "--threads", "8"],
        dramatiq_body,
        "dramatiq + dramatiq-sqs",
        "--processes 1 --threads 8 (default threads); dramatiq-sqs asks for no attributes and "
        "long-polls for the worker timeout (1 s); no option changes either",
    ),
    Peer(
        "sqs-workers",
        "sqs-workers",
        lambda py, where: [py, str(APPS / "sqsworkers_app.py")],
        lambda _: sqs_workers_body,
        "sqs-workers",
        "JSON codec, one process, long poll 20 s (asks for all attributes itself)",
    ),
    Peer(
        "PyQS",
        "pyqs",
        lambda py, where: [str(Path(py).parent / "pyqs"), where.name, "--concurrency", "1"],
        lambda _: pyqs_body,
        "pyqs (no endpoint option: boto3's AWS_ENDPOINT_URL_SQS points it at the server)",
        "--concurrency 1 (its default): a reader process and a worker process that restarts every "
        "100 messages; long poll 20 s; asks for no attributes",
    ),
]


def peer_named(name: str) -> Peer:
    for peer in PEERS:
        if peer.name == name:
            return peer
    raise KeyError(name)
