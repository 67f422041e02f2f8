"""`sqs-poller dlq stats|peek|export|replay|purge`: the operator's DLQ tools (engine: dlqtools.py)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from poller.cli.common import queue_option, queue_target
from poller.cli.terminal import Progress, confirm, graceful_stop, show_summary
from poller.errors import EXIT_FAILURE, EXIT_OK

PREVIEW_CHARS = 80


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where the DLQ is and how to poll it; every dlq command takes these."""
    options = [
        click.option("--config", "config_path", metavar="PATH", help="Config file (its queue's dlq_url)."),
        queue_option,
        click.option("--dlq-url", help="The DLQ (default: the config's queue's dlq_url)."),
        click.option("--queue-url", help="The main queue (default: the config's queue's url)."),
        click.option("--endpoint-url", help="A local SQS-compatible endpoint."),
        click.option("--region", help="AWS region (default: the config's, else the SDK's)."),
        click.option(
            "--wait",
            type=click.IntRange(0, 20),
            default=5,
            show_default=True,
            help="Long-poll seconds per receive.",
        ),
        click.option(
            "--visibility",
            type=click.IntRange(1, 43200),
            default=120,
            show_default=True,
            help="Seconds a received message stays hidden (extended while held); after a kill, "
            "messages come back after this long.",
        ),
        click.option(
            "--empty-polls",
            type=click.IntRange(1, 100),
            default=2,
            show_default=True,
            help="Consecutive empty long polls that, with the queue's counters, mean empty.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class Target:
    """The DLQ, an Sqs to reach it, the default replay destination, and the polling settings."""

    def __init__(self, kwargs: dict[str, Any]):
        from poller.ops.dlq import Polling

        config_path = kwargs.pop("config_path")
        queue_name = kwargs.pop("queue_name")
        dlq_url = kwargs.pop("dlq_url")
        queue_url = kwargs.pop("queue_url")
        endpoint_url = kwargs.pop("endpoint_url")
        region = kwargs.pop("region")
        self.polling = Polling(kwargs.pop("wait"), kwargs.pop("visibility"), kwargs.pop("empty_polls"))
        if kwargs.get("from_file") and not dlq_url:
            # Replaying a file needs no DLQ: any queue URL given serves to pick the region.
            dlq_url = kwargs.get("to") or queue_url
        self.url, self.sqs, spec = queue_target(
            config_path, dlq_url, endpoint_url, region, which="dlq_url", queue_name=queue_name
        )
        self.endpoint_url = endpoint_url or (spec.queue.endpoint_url if spec else "")
        self.region = region or (spec.queue.region if spec else "")
        self.main_url = queue_url or (spec.queue.url if spec else None)

    def resolver(self) -> Callable[[Any], Any]:
        """Inlines S3 payloads, with an S3 client for the same endpoint and region."""
        from poller.aws import aws_client
        from poller.ops.dlq import resolved

        s3 = aws_client("s3", self.region or None, self.endpoint_url or None)
        return lambda message: resolved(message, s3)

    def counts(self) -> dict[str, int]:
        """The DLQ's counters; also the check that it can be reached at all."""
        from poller.ops.dlq import queue_counts

        return queue_counts(self.sqs, self.url)


def with_target(func: Callable[..., int]) -> Callable[..., int]:
    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> int:
        return func(Target(kwargs), **kwargs)

    return wrapper


@click.group()
def dlq() -> None:
    """Operator tools for the dead-letter queue: stats, peek, export, replay, purge.

    Queue URLs come from the config file (--config; with several queues, --queue NAME says which),
    or --dlq-url / --queue-url.
    """


# --- stats ------------------------------------------------------------------------------------


@dlq.command()
@common_options
@click.option(
    "--sample",
    type=click.IntRange(0, 100_000),
    default=0,
    help="Receive up to N messages (then release them) to break failures down by type, source "
    "queue and queue name.",
)
@with_target
def stats(target: Any, sample: int) -> int:
    """Approximate visible / in-flight / delayed counts, and a failure breakdown with --sample."""
    from poller.ops.dlq import stats as dlq_stats
    from poller.output import emit_table

    result = dlq_stats(target.sqs, target.url, sample, target.polling)
    emit_table(
        "DLQ counts",
        ["queue", "visible", "in_flight", "delayed"],
        [[target.url, result.counts["visible"], result.counts["in_flight"], result.counts["delayed"]]],
    )
    if sample:
        rows = [["type", name, n] for name, n in result.types.most_common()]
        rows += [["source_queue", name, n] for name, n in result.sources.most_common()]
        rows += [["queue", name, n] for name, n in result.queues.most_common()]
        emit_table(f"Failures in a sample of {result.sampled}", ["by", "value", "messages"], rows)
    return EXIT_OK


# --- peek -------------------------------------------------------------------------------------


@dlq.command()
@common_options
@click.option("-n", "limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="Messages.")
@click.option("--json", "as_json", is_flag=True, help="Whole export records, one JSON object a line.")
@click.option("--full", is_flag=True, help="Whole bodies, not a preview.")
@with_target
def peek(target: Any, limit: int, as_json: bool, full: bool) -> int:
    """Show up to N messages and release them at once.

    SQS has no true peek: every look is a receive. It raises each message's receive count, and the
    messages are hidden from other consumers until released (at once, or after --visibility if this
    process is killed).
    """
    from poller.failure import shown_failure
    from poller.ops.dlq import peek as dlq_peek
    from poller.ops.dlq import to_record
    from poller.output import emit_json, emit_table
    from poller.pipeline.payload import describe_pointer

    messages = dlq_peek(target.sqs, target.url, limit, target.polling)
    if as_json:
        for message in messages:
            emit_json(to_record(message))
        return EXIT_OK
    rows = []
    for message in messages:
        failure = shown_failure(message.message_attributes, message.body)
        payload = describe_pointer(message.body, message.message_attributes)
        body = message.body if full else preview(message.body)
        if payload is not None:
            size = f"{payload['size']} bytes" if payload.get("size") is not None else "size unknown"
            body = f"[in S3: s3://{payload['bucket']}/{payload['key']}, {size}] " + body
        error = str(failure.get("error", "")) if full else preview(str(failure.get("error", "")))
        rows.append(
            [
                failure.get("message_id", ""),
                message.sent_at.isoformat(timespec="seconds"),
                message.receive_count,
                failure.get("type", ""),
                error,
                body,
            ]
        )
    emit_table(
        f"{len(messages)} message(s) from {target.url}",
        ["original id", "sent", "receives", "type", "error", "body"],
        rows,
    )
    return EXIT_OK


def preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


# --- export -----------------------------------------------------------------------------------


@dlq.command()
@common_options
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.jsonl")
@click.option("--delete", is_flag=True, help="Delete each message once its line is flushed and synced.")
@click.option(
    "--resolve", is_flag=True, help="Inline bodies kept in S3 (Extended Client pointers) into the file."
)
@with_target
def export(target: Any, out: Path, delete: bool, resolve: bool) -> int:
    """Stream every message to JSONL (id, body, attributes, message_attributes, failure, and
    payload: bucket, key and size of a body kept in S3).

    Messages stay hidden while it runs and are released at the end; with --delete each one is
    deleted only after the file is flushed and synced. An existing file is never overwritten.
    With --resolve a body kept in S3 is written inline (the S3 object is left in place).
    """
    from poller.ops.export import export as dlq_export
    from poller.output import emit_json, is_terminal

    if out.exists():
        raise click.UsageError(f"{out} exists: choose a new file (an export is never overwritten)")
    target.counts()
    with graceful_stop() as stopped, Progress("exporting", None) as bar:
        summary = dlq_export(
            target.sqs,
            target.url,
            out,
            delete,
            target.polling,
            stopped,
            lambda s: bar.update(s.exported, exported=s.exported, deleted=s.deleted),
            target.resolver() if resolve else None,
        )
    report = {"file": str(out), **vars(summary)}
    show_summary("export", report) if is_terminal() else emit_json({"event": "export_summary", **report})
    return EXIT_FAILURE if summary.delete_failed or summary.interrupted else EXIT_OK


# --- replay -----------------------------------------------------------------------------------


def regex(ctx: click.Context, param: click.Parameter, value: str | None) -> re.Pattern[str] | None:
    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as exc:
        raise click.BadParameter(f"not a regular expression: {exc}") from None


@dlq.command()
@common_options
@click.option(
    "--to", help="Destination queue (default: each failure's source_queue, else the config's queue's url)."
)
@click.option("--max", "max_messages", type=click.IntRange(1), help="Replay at most N matching messages.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Messages per second.")
@click.option(
    "--match-error", callback=regex, metavar="RE", help="Only failures whose 'type: error' matches."
)
@click.option("--match-body", callback=regex, metavar="RE", help="Only bodies that match.")
@click.option(
    "--max-replays",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Skip messages already replayed this many times (their poller.replays).",
)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay from an export file instead of the DLQ (sends only).",
)
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask (required without a terminal).")
@with_target
def replay(
    target: Any,
    to: str | None,
    max_messages: int | None,
    rate: float | None,
    match_error: re.Pattern[str] | None,
    match_body: re.Pattern[str] | None,
    max_replays: int,
    from_file: Path | None,
    dry_run: bool,
    yes: bool,
) -> int:
    """Send DLQ messages back, then delete them from the DLQ: never the other way round.

    Bodies and attributes are kept; poller.failure is dropped and poller.replays counts up. FIFO
    keeps each group's order with a fresh deduplication id. Messages that do not match, or were
    replayed --max-replays times, are released untouched and counted as skipped. Ctrl-C stops after
    the current batch. --dry-run still receives (SQS has no peek) unless used with --from-file.
    """
    from poller.ops.replay import ReplayOptions, replay_file, replay_queue
    from poller.output import emit_json, is_terminal

    if to and to == target.url and not from_file:
        raise click.UsageError("--to is the DLQ itself")
    options = ReplayOptions(
        to=to,
        default_destination=target.main_url,
        max_messages=max_messages,
        rate=rate,
        match_error=match_error,
        match_body=match_body,
        max_replays=max_replays,
        dry_run=dry_run,
    )
    source = str(from_file) if from_file else target.url
    if not from_file:
        visible = target.counts()["visible"]
        source += f" (about {visible} visible)"
    if to:
        target.sqs.attributes(to, ["QueueArn"])  # fail now, clearly, if the destination is unreachable
    if not dry_run:
        confirm(f"Replay from {source} to {to or 'each source queue'}?", yes)

    with graceful_stop() as stopped, Progress("replaying", None) as bar:

        def progress(s: Any) -> None:
            bar.update(
                s.done,
                total=max(s.estimate, s.done),
                replayed=s.replayed,
                skipped=s.skipped,
                failed=s.failed,
                would_replay=s.would_replay,
            )

        if from_file:
            summary = replay_file(target.sqs, from_file, options, stopped, progress)
        else:
            summary = replay_queue(target.sqs, target.url, options, target.polling, stopped, progress)
    if dry_run:
        if is_terminal():
            show_plan(summary.plan)
        else:
            for row in summary.plan:
                emit_json({"event": "would", **row})
    report = {"dry_run": dry_run, **summary.report()}
    show_summary("replay", report) if is_terminal() else emit_json({"event": "replay_summary", **report})
    return EXIT_FAILURE if summary.failed or summary.interrupted else EXIT_OK


def show_plan(plan: list[dict[str, Any]]) -> None:
    from poller.output import emit_table

    rows = [[p["id"], p["action"], p["detail"], p["type"]] for p in plan[:50]]
    emit_table(f"Dry run (first {len(rows)} of {len(plan)})", ["id", "action", "to / reason", "type"], rows)


# --- purge ------------------------------------------------------------------------------------


@dlq.command()
@common_options
@click.option("--yes", is_flag=True, help="Do not ask (required without a terminal).")
@with_target
def purge(target: Any, yes: bool) -> int:
    """Delete every message on the DLQ (after showing the approximate count and asking)."""
    from poller.output import emit_json, is_terminal

    counts = target.counts()
    total = sum(counts.values())
    confirm(f"Purge about {total} message(s) ({counts}) from {target.url}? This cannot be undone.", yes)
    target.sqs.purge(target.url)
    report = {"queue_url": target.url, "approximate_messages": total, **counts}
    show_summary("purged", report) if is_terminal() else emit_json({"event": "purged", **report})
    return EXIT_OK
