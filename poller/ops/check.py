"""`sqs-poller check`: the config, the handler and the queues, each said plainly."""

from __future__ import annotations

import json

from poller.configload import load_config
from poller.errors import EXIT_FAILURE, EXIT_OK, HandlerLoadError, SqsError
from poller.handlers.load import load_target
from poller.handlers.styles import check_signature
from poller.output import emit_table
from poller.sqs import Sqs, make_client

# A queue answers GetQueueAttributes in milliseconds: one try each, so an endpoint that never
# answers is reported within seconds instead of after every retry of a long-poll timeout.
CHECK_CONNECT_TIMEOUT = 3
CHECK_READ_TIMEOUT = 5

OUTAGE_ROOM = 3  # receives above max_receives kept for downstream outages (about one each)


def run_checks(config_path: str | None) -> int:
    """Config errors raise ConfigError (exit 2); otherwise every check runs and is reported."""
    config = load_config(config_path)
    rows: list[tuple[str, str, str]] = [("config", "ok", config.source)]
    code = EXIT_OK
    try:
        target = load_target(config.handler.target, config.handler.options)
        problem = check_signature(config.handler.style, target.obj)
        target.close()
        if problem:
            raise HandlerLoadError(f"handler.style = {config.handler.style!r}: {problem}")
        rows.append(("handler", "ok", f"{config.handler.target} (style {config.handler.style})"))
    except HandlerLoadError as exc:
        rows.append(("handler", "FAILED", str(exc)))
        code = exc.exit_code
    queue = config.queue
    client = make_client(
        queue.url,
        queue.region,
        queue.endpoint_url,
        read_timeout=CHECK_READ_TIMEOUT,
        attempts=1,
        connect_timeout=CHECK_CONNECT_TIMEOUT,
    )
    sqs = Sqs(client)
    for name, url in (("queue", config.queue.url), ("dlq", config.queue.dlq_url)):
        try:
            attributes = sqs.attributes(url)
        except SqsError as exc:
            rows.append((name, "FAILED", f"{url}: {exc}"))
            code = code or EXIT_FAILURE
            continue
        rows.append((name, "ok", f"{url} ({attributes.get('ApproximateNumberOfMessages', '?')} visible)"))
        if name == "queue":
            rows.append(redrive_row(attributes, config.queue.max_receives))
    emit_table("sqs-poller check", ("check", "result", "detail"), rows)
    return code


def redrive_row(attributes: dict[str, str], max_receives: int) -> tuple[str, str, str]:
    """The queue's redrive policy is the backstop for messages that crash a worker outright.

    Above max_receives it must also leave room for downstream outages: the daemon never
    dead-letters for `Unavailable`, but each outage adds about one receive to the messages it
    touches, and SQS counts every receive."""
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return ("redrive", "warning", "no redrive policy: a message that kills workers never leaves")
    count = int(json.loads(policy).get("maxReceiveCount", 0))
    if count <= max_receives:
        return (
            "redrive",
            "warning",
            f"maxReceiveCount {count} <= max_receives {max_receives}: SQS moves failing "
            "messages before sqs-poller can record why",
        )
    room = count - max_receives
    if room < OUTAGE_ROOM:
        return (
            "redrive",
            "warning",
            f"maxReceiveCount {count} leaves room for about {room} downstream outage(s) above "
            f"max_receives {max_receives}: each adds about one receive to the messages it touches, "
            f"then SQS moves them to the DLQ without poller.failure; raise it to at least "
            f"{max_receives + OUTAGE_ROOM}",
        )
    return (
        "redrive",
        "ok",
        f"maxReceiveCount {count} > max_receives {max_receives}: room for about {room} downstream outages",
    )
