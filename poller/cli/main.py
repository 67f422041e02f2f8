"""Commands and their exit codes: 0 clean stop, 1 runtime failure, 2 bad config or usage,
3 handler cannot be loaded."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import click

from poller import __version__
from poller.cli.common import config_option, make_encryptor, optional_config, queue_option, queue_target
from poller.configload import load_config
from poller.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ConfigError, PollerError, SqsError


class LazyGroup(click.Group):
    """Click's lazily loaded subcommands: `dlq`, `deploy` and the operator's (pause, status...)
    are imported when used, not on every `run` (whose start-up time is a cold start)."""

    LAZY = {
        "dlq": "poller.cli.dlq:dlq",
        "deploy": "poller.cli.deploy:deploy",
        **{
            name: f"poller.cli.control:{name}"
            for name in ("pause", "resume", "quiet", "unquiet", "status", "top")
        },
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            module, _, attr = self.LAZY[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sqs-poller")
def cli() -> None:
    """sqs-poller: a long-lived, multiprocess Amazon SQS poller daemon."""


@cli.command()
@config_option
def run(config_path: str | None) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT (SIGHUP reloads)."""
    from poller.daemon.boot import skip_rich

    config = load_config(config_path)
    skip_rich(config.logging.format)
    from poller.daemon.launch import Launcher

    launcher = Launcher(config)
    launcher.start_early(config)  # the workers boot while the supervisor imports what it needs
    from poller.daemon.log import configure_logging
    from poller.daemon.supervisor import Supervisor

    configure_logging(config.logging.level, config.logging.format)
    return Supervisor(config, config_path, launcher=launcher).run()


@cli.command()
@config_option
@click.option("--queue", "queue_name", metavar="NAME", help="Check only this queue (default: every one).")
def check(config_path: str | None, queue_name: str | None) -> int:
    """Validate the config, load each queue's handler, reach its queues; say what is wrong."""
    from poller.ops.check import run_checks

    return run_checks(config_path, queue_name)


@cli.command()
@click.option("--messages", default=300, show_default=True, help="Sample messages to send.")
@click.option("--processes", default=2, show_default=True, help="Worker processes.")
@click.option(
    "--lambda",
    "lambda_",
    is_flag=True,
    help="Run an unchanged Lambda function (examples/lambda_powertools/orders.py) instead.",
)
def demo(messages: int, processes: int, lambda_: bool) -> int:
    """Run everything on an embedded local SQS endpoint with sample traffic."""
    if lambda_:
        from poller.dev.demo_lambda import run_lambda_demo

        return run_lambda_demo(messages=min(messages, 200), processes=processes)
    from poller.dev.demo import run_demo

    return run_demo(messages=messages, processes=processes)


@cli.command()
@config_option
@queue_option
@click.option("--queue-url", help="Queue to send to (default: the config's queue's url).")
@click.option("--endpoint-url", help="A local SQS-compatible endpoint.")
@click.option("--region", help="AWS region (default: the config's, else the SDK's).")
@click.option("--file", "jsonl", type=click.File("r"), help="JSONL: one message per line.")
@click.option(
    "--group-id",
    help="Message group id: a FIFO queue's ordering group, a standard queue's tenant (fair queues).",
)
@click.option("--dedup-id", help="FIFO deduplication id (default: random); standard queues take none.")
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="NAME=VALUE",
    help="A String message attribute; repeatable.",
)
@click.option("--delay", type=click.IntRange(0, 900), default=0, help="Delay seconds.")
@click.option("--count", type=click.IntRange(1, 1_000_000), default=1, help="Send BODY N times.")
@click.option(
    "--encrypt",
    is_flag=True,
    help="Envelope-encrypt bodies with the config's [crypto] key (or --keyring/--kms-key-id).",
)
@click.option(
    "--keyring",
    type=click.Path(exists=True, dir_okay=False),
    help="With --encrypt: a local keyring file instead of [crypto].",
)
@click.option("--kms-key-id", help="With --encrypt: a KMS key id, ARN or alias instead of [crypto].")
@click.argument("body", required=False)
def send(
    config_path: str | None,
    queue_name: str | None,
    queue_url: str | None,
    endpoint_url: str | None,
    region: str | None,
    jsonl: Any,
    group_id: str | None,
    dedup_id: str | None,
    attributes: Sequence[str],
    delay: int,
    count: int,
    encrypt: bool,
    keyring: str | None,
    kms_key_id: str | None,
    body: str | None,
) -> int:
    """Enqueue BODY (COUNT times), or every line of a JSONL file.

    A JSONL line is {"body": ..., "attributes": {...}, "group_id": ..., "deduplication_id": ...,
    "delay": N}; a body that is not a string is sent as compact JSON. group_id is a FIFO queue's
    group, or a standard queue's tenant (fair queues); deduplication_id is for FIFO queues only.
    """
    from poller.ops.send import Producer, read_jsonl, send_messages

    if (body is None) == (jsonl is None):
        raise click.UsageError("give a BODY or --file FILE.jsonl (one of them)")
    if (keyring or kms_key_id) and not encrypt:
        raise click.UsageError("--keyring and --kms-key-id only make sense with --encrypt")
    url, sqs, spec = queue_target(config_path, queue_url, endpoint_url, region, queue_name=queue_name)
    encryptor = None
    if encrypt:
        encryptor = make_encryptor(config_path, queue_url, keyring, kms_key_id, region)
    if jsonl is not None:
        entries = read_jsonl(jsonl)
    else:
        attrs = parse_attribute_options(attributes)
        entries = (
            {
                "body": body,
                "attributes": attrs,
                "group_id": group_id,
                "deduplication_id": dedup_id,
                "delay": delay,
            }
            for _ in range(count)
        )
    config = optional_config(config_path, required=spec is not None)
    producer = Producer(sqs, url, config, spec.queue if spec else None)
    try:
        sent, failed = send_messages(sqs, url, entries, encryptor, producer)
    finally:
        producer.close()
    from poller.output import emit_json

    emit_json({"event": "sent", "queue_url": url, "sent": sent, "failed": len(failed)})
    for failure in failed[:20]:
        emit_json({"event": "send_failed", "line": failure[0], "error": failure[1]})
    return EXIT_FAILURE if failed else EXIT_OK


def parse_attribute_options(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--attribute {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="sqs-poller", standalone_mode=False
        )
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return EXIT_FAILURE
    except click.exceptions.ClickException as exc:
        exc.show()
        return EXIT_CONFIG if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except ConfigError as exc:
        click.echo(f"sqs-poller: config error: {exc}", err=True)
        return exc.exit_code
    except SqsError as exc:
        click.echo(f"sqs-poller: {exc}", err=True)
        return exc.exit_code
    except PollerError as exc:
        click.echo(f"sqs-poller: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return result if isinstance(result, int) else EXIT_OK
