"""`sqs-poller deploy start|status|rollback`: the canary rollout of a launch template
version (engine: poller/ops/deploy.py). Settings come from `terraform output -json
rollout` (--settings) and/or flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from poller.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from poller.ops.deploy import (
    SUCCEEDED,
    RolloutError,
    describe_state,
    latest_refresh,
    rollback_rollout,
    settings_from_mapping,
    start_rollout,
    watch_rollout,
)


def autoscaling_client(region: str | None, endpoint_url: str | None) -> Any:
    from poller.aws import aws_client

    return aws_client("autoscaling", region, endpoint_url)


def parse_checkpoints(_ctx: click.Context, _param: click.Parameter, value: str | None):
    if value is None:
        return None
    try:
        return [int(point) for point in value.split(",") if point.strip()]
    except ValueError as exc:
        raise click.BadParameter("a comma-separated list of percentages, e.g. 10,50,100") from exc


@click.group()
@click.option("--region", help="AWS region (default: the SDK's).")
@click.option("--endpoint-url", help="An Auto Scaling-compatible endpoint, for tests.")
@click.pass_context
def deploy(ctx: click.Context, region: str | None, endpoint_url: str | None) -> None:
    """Roll a launch template version out as a canary, watch it, roll it back."""
    # A caller (a test, a wrapper) may hand in its own client factory.
    ctx.ensure_object(dict).setdefault("client", lambda: autoscaling_client(region, endpoint_url))


@deploy.command()
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON from `terraform output -json rollout`.",
)
@click.option("--group", help="Auto Scaling group name.")
@click.option("--version", "version", help="Launch template version number to roll out.")
@click.option("--alarm", "alarms", multiple=True, help="Alarm that rolls back (repeatable).")
@click.option("--checkpoints", callback=parse_checkpoints, help="e.g. 10,50,100")
@click.option("--checkpoint-delay", type=click.IntRange(0, 172800))
@click.option("--min-healthy", "min_healthy_percentage", type=click.IntRange(0, 100))
@click.option("--max-healthy", "max_healthy_percentage", type=click.IntRange(100, 200))
@click.option("--warmup", "instance_warmup", type=click.IntRange(0, 3600))
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow it to the end.")
@click.option("--poll", type=click.FloatRange(0.1, 600), default=30, show_default=True)
@click.pass_context
def start(ctx: click.Context, settings_path: Path | None, wait: bool, poll: float, **flags: Any) -> None:
    """Start the refresh; exit 0 only if the new version lands."""
    values = json.loads(settings_path.read_text()) if settings_path else {}
    if isinstance(values, dict) and "value" in values and "type" in values:
        values = values["value"]  # `terraform output -json` of the whole output object
    flags["alarms"] = list(flags["alarms"]) or None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        settings = settings_from_mapping(values, flags)
        client = ctx.obj["client"]()
        rollout = start_rollout(client, settings)
    except RolloutError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    except (BotoCoreError, ClientError) as exc:  # AWS refused: say what it said
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_FAILURE)
    click.echo(
        f"refresh {rollout.refresh_id}: {rollout.group} version {rollout.from_version} -> "
        f"{rollout.to_version} (a rollback returns to {rollout.from_version})"
    )
    if not wait:
        ctx.exit(EXIT_OK)
    ctx.exit(follow(client, rollout.group, rollout.refresh_id, poll))


def follow(client: Any, group: str, refresh_id: str, poll: float) -> int:
    state: dict[str, Any] = {}
    for state in watch_rollout(client, group, refresh_id, poll_seconds=poll):
        click.echo(describe_state(state))
    return EXIT_OK if state.get("Status") in SUCCEEDED else EXIT_FAILURE


@deploy.command()
@click.option("--group", required=True, help="Auto Scaling group name.")
@click.option("--wait/--no-wait", default=False, show_default=True)
@click.option("--poll", type=click.FloatRange(0.1, 600), default=30, show_default=True)
@click.pass_context
def status(ctx: click.Context, group: str, wait: bool, poll: float) -> None:
    """The latest refresh of the group."""
    client = ctx.obj["client"]()
    refresh = latest_refresh(client, group)
    if refresh is None:
        click.echo(f"{group}: no instance refresh yet")
        ctx.exit(EXIT_OK)
    click.echo(f"refresh {refresh['InstanceRefreshId']}")
    if wait:
        ctx.exit(follow(client, group, refresh["InstanceRefreshId"], poll))
    click.echo(describe_state(refresh))
    ctx.exit(EXIT_OK if refresh["Status"] not in ("Failed", "RollbackFailed") else EXIT_FAILURE)


@deploy.command()
@click.option("--group", required=True, help="Auto Scaling group name.")
@click.pass_context
def rollback(ctx: click.Context, group: str) -> None:
    """Stop the active refresh and return to the group's saved (previous) version."""
    refresh_id = rollback_rollout(ctx.obj["client"](), group)
    click.echo(f"rolling back refresh {refresh_id} of {group}")
