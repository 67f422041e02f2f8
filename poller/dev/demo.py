"""`sqs-poller demo`: the daemon on an embedded local SQS endpoint with sample traffic.

Three queues, one daemon: `mailbox` (the demo's handler `poller.dev.demo:handle`: most messages
succeed, some fail twice then succeed, some ask to be retried later, some are poison, some always
fail), `billing` at a higher priority and `audit` at a lower one, each with its own handler and
DLQ. Once a third of the mailbox messages are handled, the mailbox's legacy system goes down for
OUTAGE_SECONDS: its handler raises `Unavailable`, the mailbox queue's breaker pauses that queue
only (billing and audit go on), and nothing is dead-lettered for it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
import time
from typing import Any

from poller.message import Message, Poison, Retry, Unavailable

KINDS = (
    ("ok", 0.79),
    ("flaky", 0.10),
    ("later", 0.03),
    ("poison", 0.04),
    ("broken", 0.03),
    ("tampered", 0.01),
)


OUTAGE_SECONDS = 15
OUTAGE_ENV = "SQS_POLLER_DEMO_OUTAGE"  # a file that exists while the legacy system is down
DEMO_RATE = 20  # [flow] max_per_second: the legacy system takes 20 requests a second
DEMO_COOLDOWN = 5  # [flow] breaker_cooldown: probes 5 s and 15 s after it opens


class LegacySystemDown(Exception):
    """The demo's stand-in for a slow legacy dependency that fails now and then."""


def handle(message: Message) -> None:
    payload = message.json()
    kind = payload.get("kind")
    time.sleep(random.uniform(0.005, 0.03))  # a call to something slow
    if os.path.exists(os.environ.get(OUTAGE_ENV, "\0")):
        raise Unavailable("legacy system refused the connection (outage)")
    if kind == "ok":
        return
    if kind == "flaky" and message.receive_count <= 2:
        raise LegacySystemDown(f"legacy system answered 503 (attempt {message.receive_count})")
    if kind == "later" and message.receive_count == 1:
        raise Retry(delay=1, reason="mailbox service asked us to come back in a second")
    if kind == "poison":
        raise Poison("payload has no 'username': cannot create a mailbox without one")
    if kind == "broken":
        raise ValueError("transform failed: quota_mb is not a number")


def bill(message: Message) -> None:
    """The billing queue's handler: a quick call; one invoice in ten is retried once."""
    time.sleep(random.uniform(0.002, 0.01))
    if message.json().get("invoice", 0) % 10 == 3 and message.receive_count == 1:
        raise Retry(delay=1, reason="billing system asked us to come back in a second")


def audit(message: Message) -> None:
    """The audit queue's handler: low priority, slow, never fails."""
    time.sleep(random.uniform(0.02, 0.05))


QUEUES = (  # name, priority, handler, messages per mailbox message
    ("mailbox", 0, "poller.dev.demo:handle", 1.0),
    ("billing", 5, "poller.dev.demo:bill", 0.25),
    ("audit", -1, "poller.dev.demo:audit", 0.25),
)


def sample_records(count: int, encryptor: Any, seed: int = 7) -> list[dict[str, Any]]:
    """Envelope-encrypted requests, as an API would enqueue them; a few tampered with on the way."""
    rng = random.Random(seed)
    names, weights = zip(*KINDS, strict=True)
    records = []
    for n in range(count):
        kind = rng.choices(names, weights)[0]
        plaintext = json.dumps({"kind": kind, "request": n, "username": f"user{n}"})
        body, marker = encryptor.encrypt(plaintext)
        if kind == "tampered":
            body = body[:-8] + ("A" if body[-8] != "A" else "B") + body[-7:]
        records.append(
            {"body": body, "attributes": {"source": "demo-api", "request-id": f"req-{n:05d}", **marker}}
        )
    return records


def run_demo(messages: int = 300, processes: int = 2) -> int:
    from poller.config import CryptoConfig
    from poller.configload import build_config
    from poller.crypto import build_encryptor, create_keyring
    from poller.daemon.log import configure_logging
    from poller.daemon.metrics import ENV_DIR, render_metrics
    from poller.daemon.supervisor import Supervisor
    from poller.dev.demoview import DemoView, logs_to_file
    from poller.dev.localsqs import LocalSqs, create_queue_pair, free_port
    from poller.ops.send import send_messages
    from poller.output import emit_note, emit_table, is_terminal
    from poller.sqs import Sqs

    metrics_dir = tempfile.mkdtemp(prefix="sqs-poller-demo-metrics-")
    os.environ[ENV_DIR] = metrics_dir
    keyring = os.path.join(metrics_dir, "keyring.json")  # the demo's local stand-in for KMS
    create_keyring(keyring, key_id="demo-key")
    crypto = {"enabled": True, "provider": "local", "keyring_path": keyring}
    with LocalSqs() as local:
        client = local.client()
        pairs = {
            name: create_queue_pair(client, f"demo-{name}", max_receive_count=10, visibility=10)
            for name, *_ in QUEUES
        }
        url, dlq_url = pairs["mailbox"]
        tables = {}
        for name, priority, target, _ in QUEUES:
            queue_url, queue_dlq = pairs[name]
            tables[name] = {
                "url": queue_url,
                "dlq_url": queue_dlq,
                "priority": priority,
                "endpoint_url": local.endpoint_url,
                "region": "us-east-1",
                "wait_time_seconds": 1,
                "visibility_timeout": 10,
                "max_receives": 4,
                "handler": {"target": target, "timeout": 30},
            }
        tables["mailbox"]["flow"] = {"max_per_second": DEMO_RATE, "breaker_cooldown": DEMO_COOLDOWN}
        config = build_config(
            {
                "queues": tables,
                "retry": {"backoff_base": 0.5, "backoff_max": 4},
                "workers": {"processes": processes, "concurrency": 10, "shutdown_grace": 10},
                "metrics": {"listen": f"127.0.0.1:{free_port()}"},
                "logging": {"level": "info", "format": "json"},  # to the log file (demoview.py)
                "control": {"socket": os.path.join(metrics_dir, "control.sock")},
                "crypto": crypto,
            },
            env={},
            source="(demo)",
        )
        configure_logging(config.logging.level, config.logging.format)
        sqs = Sqs(client)
        encryptor = build_encryptor(CryptoConfig(**crypto))
        sent, failed = send_messages(sqs, url, sample_records(messages, encryptor))
        sent_to = {"mailbox": sent}
        for name, _, _, share in QUEUES[1:]:
            records = [
                {"body": json.dumps({"invoice": n, "queue": name})} for n in range(int(messages * share))
            ]
            sent_to[name], more_failed = send_messages(sqs, pairs[name][0], records)
            failed = [*failed, *more_failed]
        emit_note(
            f"demo: sent {sent} encrypted messages to the mailbox queue, {sent_to['billing']} to billing "
            f"(a higher priority) and {sent_to['audit']} to audit (a lower one) on {local.endpoint_url}; "
            f"metrics on http://{config.metrics.listen}/metrics"
        )
        supervisor = Supervisor(config)
        log_path = os.path.join(tempfile.gettempdir(), f"sqs-poller-demo-{os.getpid()}.log")
        outage: dict[str, float] = {}
        flag = os.path.join(metrics_dir, "legacy-system-down")
        os.environ[OUTAGE_ENV] = flag  # the workers, spawned after this, see the same file
        started = time.monotonic()
        urls = [queue_url for queue_url, _ in pairs.values()]
        watcher = threading.Thread(target=_stop_when_settled, args=(sqs, urls, supervisor), daemon=True)
        watcher.start()
        args = (metrics_dir, flag, supervisor.flow, max(1, messages // 3), outage)
        threading.Thread(target=_take_legacy_down, args=args, daemon=True).start()
        live = is_terminal()  # (asked before stdout goes to the log file)
        with logs_to_file(log_path) as screen:
            note = f"the demo stops once its traffic settles; the daemon's logs: {log_path}"
            view = DemoView(config.control.socket, screen, live, note)
            view.start()
            try:
                code = supervisor.run()
            finally:
                view.stop()
        elapsed = time.monotonic() - started
        page = render_metrics(metrics_dir).decode()
        totals = _totals(page, "mailbox")
        dead = _receive_all(client, dlq_url)
        per_queue = [
            (
                name,
                priority,
                sent_to[name],
                *_outcomes(_totals(page, name)),
                len(_receive_all(client, pairs[name][1])),
            )
            for name, priority, _, _ in QUEUES[1:]
        ]
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.environ.pop(ENV_DIR, None)
    os.environ.pop(OUTAGE_ENV, None)
    dlq_depth = len(dead)
    samples = dead[:3]
    by_outage = sum(1 for m in dead if _why(m)[1] in ("Unavailable", "BreakerOpen"))

    requests = totals.get("requests", 0)
    emit_table(
        "sqs-poller demo",
        ("figure", "value"),
        [
            ("messages sent", sent),
            ("handled (deleted)", int(totals.get("deleted", 0))),
            ("retries", int(totals.get("retried", 0))),
            ("dead-lettered", int(totals.get("dead_lettered", 0))),
            ("in the DLQ now", dlq_depth),
            ("legacy system down (seconds)", f"{outage.get('down', 0):.1f}"),
            ("circuit breaker openings", int(totals.get("breaker_opened", 0))),
            ("polling paused (seconds)", f"{outage.get('paused', 0):.1f}"),
            ("dead-lettered by the outage", by_outage),
            ("worker processes", processes),
            ("elapsed seconds", f"{elapsed:.1f}"),
            ("SQS requests per message", f"{requests / max(sent, 1):.2f}"),
        ],
    )
    mailbox = ("mailbox", 0, sent, *_outcomes(totals), dlq_depth)
    emit_table(
        "queues (one daemon)",
        ("queue", "priority", "sent", "handled", "retries", "dead-lettered", "in its DLQ"),
        [mailbox, *per_queue],
    )
    if samples:
        emit_table(
            "dead-lettered: why (poller.failure)",
            ("message_id", "type", "error"),
            [_why(m) for m in samples],
        )
    emit_note(f"The daemon's logs (one JSON object a line): {log_path}")
    emit_note(
        "Next: in a deployment, watch a host with `sqs-poller top`, pause a queue with "
        "`sqs-poller pause NAME`; inspect and replay the DLQ with "
        "`sqs-poller dlq stats --sample 100` and `sqs-poller dlq peek -n 5` (--config PATH)."
    )
    lost = sent - int(totals.get("deleted", 0)) - dlq_depth
    lost += sum(row[2] - row[3] - row[6] for row in per_queue)
    if failed or lost or code or by_outage:
        emit_note(f"demo problem: send failures {len(failed)}, unaccounted {lost}, exit {code}")
        return code or 1
    return 0


def _stop_when_settled(sqs: Any, urls: list[str], supervisor: Any, deadline: float = 300) -> None:
    """Stop the daemon once the queues have held nothing (visible, in flight, delayed) twice."""
    names = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    quiet = 0
    until = time.monotonic() + deadline
    time.sleep(2)
    while time.monotonic() < until:
        time.sleep(0.5)
        try:
            held = sum(int(a.get(n, 0)) for a in (sqs.attributes(u, names) for u in urls) for n in names)
        except Exception:
            continue
        quiet = quiet + 1 if held == 0 else 0
        if quiet >= 2:
            break
    supervisor.request_stop()


def _take_legacy_down(
    metrics_dir: str, flag: str, flow: Any, after: int, outage: dict[str, float], deadline: float = 120
) -> None:
    """Once `after` messages were handled, the legacy system is down for OUTAGE_SECONDS; meanwhile
    measure how long the host's breaker kept polling paused."""
    from poller.daemon.metrics import render_metrics

    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if _totals(render_metrics(metrics_dir).decode(), "mailbox").get("deleted", 0) >= after:
            break
        time.sleep(0.2)
    open(flag, "w").close()
    down_at = time.monotonic()
    paused = 0.0
    while time.monotonic() < until:
        tick = time.monotonic()
        time.sleep(0.1)
        if not flow.closed:
            paused += time.monotonic() - tick
        if os.path.exists(flag) and time.monotonic() - down_at >= OUTAGE_SECONDS:
            os.unlink(flag)
            outage["down"] = time.monotonic() - down_at
        elif not os.path.exists(flag) and flow.closed:
            break
    outage["paused"] = paused


def _receive_all(client: Any, url: str) -> list[dict[str, Any]]:
    """Every message on the (small) queue, hidden for a minute."""
    out: list[dict[str, Any]] = []
    while got := client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, MessageAttributeNames=["All"]
    ).get("Messages", []):
        out += got
    return out


def _totals(text: str, queue: str | None = None) -> dict[str, float]:
    """One queue's outcomes, breaker openings and SQS requests (every queue's with `queue`
    None), from a /metrics page."""
    from poller.daemon.metrics import metric_values

    totals: dict[str, float] = {}
    mine = f'queue="{queue}"' if queue else "queue="
    for key, value in metric_values(text).items():
        if mine not in key:
            continue
        if key.startswith('sqs_poller_messages_total{outcome="'):
            totals[key.split('"')[1]] = totals.get(key.split('"')[1], 0) + value
        elif key.startswith("sqs_poller_breaker_transitions_total{") and 'to="open"' in key:
            totals["breaker_opened"] = totals.get("breaker_opened", 0) + value
        elif key.startswith("sqs_poller_sqs_requests_total{"):
            totals["requests"] = totals.get("requests", 0) + value
    return totals


def _outcomes(totals: dict[str, float]) -> tuple[int, int, int]:
    """(handled, retries, dead-lettered)."""
    return tuple(int(totals.get(k, 0)) for k in ("deleted", "retried", "dead_lettered"))  # type: ignore[return-value]


def _why(message: dict[str, Any]) -> tuple[str, str, str]:
    attribute = message.get("MessageAttributes", {}).get("poller.failure", {})
    failure = json.loads(attribute.get("StringValue", "{}"))
    return message["MessageId"], failure.get("type", "?"), failure.get("error", "?")[:80]
