"""`sqs-poller check`: the config, the handler and the queues, each said plainly."""

from __future__ import annotations

import json

from poller.config import QueueSpec, select_queue
from poller.configload import load_config
from poller.errors import EXIT_FAILURE, EXIT_OK, HandlerLoadError, SqsError
from poller.handlers.load import load_target
from poller.handlers.styles import check_signature
from poller.output import emit_table
from poller.sqs import Sqs, make_client, region_from_url

# A queue answers GetQueueAttributes in milliseconds: one try each, so an endpoint that never
# answers is reported within seconds instead of after every retry of a long-poll timeout.
CHECK_CONNECT_TIMEOUT = 3
CHECK_READ_TIMEOUT = 5

OUTAGE_ROOM = 3  # receives above max_receives kept for downstream outages (about one each)


def run_checks(config_path: str | None, queue_name: str | None = None) -> int:
    """Config errors raise ConfigError (exit 2), an unknown `queue_name` too; otherwise every
    check of every queue (or of `queue_name` only) runs and is reported, each row naming its
    queue. A handler that cannot load is exit 3, a queue that cannot be reached exit 1."""
    config = load_config(config_path)
    specs = config.queues if queue_name is None else (select_queue(config, queue_name),)
    rows: list[tuple[str, str, str, str]] = [("config", "", "ok", config.source)]
    code = EXIT_OK  # the worst seen: 3 (a handler cannot load) over 1 (a queue unreachable)
    clients: dict[tuple[str, str], Sqs] = {}
    for spec in specs:
        code = max(code, check_handler(spec, rows))
        queue = spec.queue
        where = (queue.region or region_from_url(queue.url) or "", queue.endpoint_url)
        if where not in clients:
            clients[where] = Sqs(
                make_client(
                    queue.url,
                    queue.region,
                    queue.endpoint_url,
                    read_timeout=CHECK_READ_TIMEOUT,
                    attempts=1,
                    connect_timeout=CHECK_CONNECT_TIMEOUT,
                )
            )
        code = max(code, check_queues(spec, clients[where], rows))
    emit_table("sqs-poller check", ("check", "queue", "result", "detail"), rows)
    return code


def check_handler(spec: QueueSpec, rows: list[tuple[str, str, str, str]]) -> int:
    """Import the queue's handler and check it can be called the way its style calls it."""
    handler = spec.handler
    try:
        target = load_target(handler.target, handler.options)
        problem = check_signature(handler.style, target.obj)
        target.close()
        if problem:
            raise HandlerLoadError(f"handler.style = {handler.style!r}: {problem}")
    except HandlerLoadError as exc:
        rows.append(("handler", spec.name, "FAILED", f"queue {spec.name}: {exc}"))
        return exc.exit_code
    rows.append(("handler", spec.name, "ok", f"{handler.target} (style {handler.style})"))
    return EXIT_OK


def check_queues(spec: QueueSpec, sqs: Sqs, rows: list[tuple[str, str, str, str]]) -> int:
    """The queue and its DLQ can be reached; the queue's redrive policy targets that DLQ and
    backs max_receives."""
    code = EXIT_OK
    found: dict[str, dict[str, str]] = {}
    for check, url in (("queue", spec.queue.url), ("dlq", spec.queue.dlq_url)):
        try:
            found[check] = sqs.attributes(url)
        except SqsError as exc:
            rows.append((check, spec.name, "FAILED", f"{url}: {exc}"))
            code = EXIT_FAILURE
            continue
        visible = found[check].get("ApproximateNumberOfMessages", "?")
        rows.append((check, spec.name, "ok", f"{url} ({visible} visible)"))
    if "queue" in found:
        dlq = (spec.queue.dlq_url, found.get("dlq", {}).get("QueueArn"))
        name, result, detail = redrive_row(found["queue"], spec.queue.max_receives, dlq)
        rows.append((name, spec.name, result, detail))
        if result == "FAILED":
            code = EXIT_FAILURE
    return code


def redrive_row(
    attributes: dict[str, str], max_receives: int, dlq: tuple[str, str | None] = ("", None)
) -> tuple[str, str, str]:
    """The queue's redrive policy is the backstop for messages that crash a worker outright.

    It must target `dlq_url` (`dlq` is its URL and, when it could be read, its ARN): what SQS
    moves elsewhere lands where the DLQ tools never look. Above max_receives it must also leave
    room for downstream outages: the daemon never dead-letters for `Unavailable`, but each
    outage adds about one receive to the messages it touches, and SQS counts every receive."""
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return ("redrive", "warning", "no redrive policy: a message that kills workers never leaves")
    target = json.loads(policy).get("deadLetterTargetArn", "")
    dlq_url, dlq_arn = dlq
    if dlq_arn and target != dlq_arn:
        return (
            "redrive",
            "FAILED",
            f"the redrive policy targets {target or '(no deadLetterTargetArn)'}, not dlq_url {dlq_url} "
            f"({dlq_arn}): messages SQS moves would land where the DLQ tools never look",
        )
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
