"""`sqs-poller demo --lambda`: an unchanged AWS Lambda function, written with Powertools' batch
utilities (examples/lambda_powertools/orders.py), run by the daemon on an embedded local SQS
endpoint: Lambda's event, partial batch failures, a filter, batches gathered over a window."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EXAMPLE = "examples.lambda_powertools.orders:lambda_handler"
FILTER = '{"body": {"quantity": [{"numeric": [">", 0]}]}}'  # orders.toml's filter


def sample_orders(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """Orders as an API enqueues them: most good, some invalid (the function rejects them every
    time), some for zero items (the filter drops them before the function sees them)."""
    rng = random.Random(seed)
    records = []
    for n in range(count):
        roll = rng.random()
        order: dict[str, Any] = {
            "order_id": f"o-{n}",
            "sku": f"SKU-{rng.randint(1, 40)}",
            "quantity": 1 + n % 3,
        }
        if roll < 0.05:
            order.pop("order_id")  # the function raises InvalidOrder: retried, then dead-lettered
        elif roll < 0.12:
            order["quantity"] = 0  # matches no filter pattern: deleted unhandled, "filtered"
        records.append({"body": order, "attributes": {"source": "demo-api"}})
    return records


def run_lambda_demo(messages: int = 200, processes: int = 2) -> int:
    from poller.configload import build_config
    from poller.daemon.log import configure_logging
    from poller.daemon.metrics import ENV_DIR, render_metrics
    from poller.daemon.supervisor import Supervisor
    from poller.dev.demo import _stop_when_settled, _totals
    from poller.dev.localsqs import LocalSqs, create_queue_pair, free_port
    from poller.errors import HandlerLoadError
    from poller.ops.send import send_messages
    from poller.output import emit_note, emit_table, is_terminal
    from poller.sqs import Sqs

    if not (Path.cwd() / "examples" / "lambda_powertools" / "orders.py").exists():
        raise HandlerLoadError(
            "demo --lambda runs examples/lambda_powertools/orders.py: run it from the repository"
        )
    metrics_dir = tempfile.mkdtemp(prefix="sqs-poller-demo-metrics-")
    os.environ[ENV_DIR] = metrics_dir
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the function's own logger: quieter
    with LocalSqs() as local:
        client = local.client()
        url, dlq_url = create_queue_pair(client, "demo-orders", max_receive_count=10, visibility=30)
        config = build_config(
            {
                "queue": {
                    "url": url,
                    "dlq_url": dlq_url,
                    "endpoint_url": local.endpoint_url,
                    "region": "us-east-1",
                    "wait_time_seconds": 1,
                    "visibility_timeout": 30,
                    "max_receives": 3,
                },
                "retry": {"backoff_base": 0.5, "backoff_max": 2},
                "workers": {"processes": processes, "concurrency": 50, "shutdown_grace": 10},
                "handler": {
                    "style": "lambda",
                    "target": EXAMPLE,
                    "timeout": 30,
                    "batch_size": 50,
                    "batch_window": 1,
                    "filters": [FILTER],
                    "options": {"function_name": "orders", "memory_limit_in_mb": 512},
                },
                "metrics": {"listen": f"127.0.0.1:{free_port()}"},
                "logging": {"level": "info", "format": "console" if is_terminal() else "json"},
            },
            env={},
            source="(demo --lambda)",
        )
        configure_logging(config.logging.level, config.logging.format)
        sqs = Sqs(client)
        sent, failed = send_messages(sqs, url, sample_orders(messages))
        emit_note(f"demo --lambda: sent {sent} orders; running {EXAMPLE} unchanged (style lambda)")
        supervisor = Supervisor(config)
        started = time.monotonic()
        watcher = threading.Thread(target=_stop_when_settled, args=(sqs, [url], supervisor), daemon=True)
        watcher.start()
        code = supervisor.run()
        elapsed = time.monotonic() - started
        totals = _totals(render_metrics(metrics_dir).decode())
        dlq_depth = int(sqs.attributes(dlq_url)["ApproximateNumberOfMessages"])
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.environ.pop(ENV_DIR, None)
    handled, filtered = int(totals.get("deleted", 0)), int(totals.get("filtered", 0))
    emit_table(
        "sqs-poller demo --lambda (an unchanged Powertools BatchProcessor function)",
        ("figure", "value"),
        [
            ("orders sent", sent),
            ("handled by the function (deleted)", handled),
            ("filtered out by the filter pattern", filtered),
            ("retried (batchItemFailures)", int(totals.get("retried", 0))),
            ("dead-lettered after max_receives", int(totals.get("dead_lettered", 0))),
            ("in the DLQ now", dlq_depth),
            ("elapsed seconds", f"{elapsed:.1f}"),
        ],
    )
    lost = sent - handled - filtered - dlq_depth
    if failed or lost or code:
        emit_note(f"demo problem: send failures {len(failed)}, unaccounted {lost}, exit {code}")
        return code or 1
    return 0
