"""What several commands share: the --config and --queue options, the queue a command talks to,
and the encryptor for `send --encrypt`."""

from __future__ import annotations

import os
from typing import Any

import click

from poller.config import Config, QueueSpec, select_queue
from poller.configload import DEFAULT_PATH, ENV_PATH, load_config, resolve_path
from poller.errors import ConfigError

CONFIG_HELP = f"Config file (default: ${ENV_PATH}, else {DEFAULT_PATH})."
config_option = click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
queue_option = click.option(
    "--queue",
    "queue_name",
    metavar="NAME",
    help="The config's queue NAME ([queues.NAME]); required when the config has several.",
)


def queue_target(
    config_path: str | None,
    queue_url: str | None,
    endpoint_url: str | None,
    region: str | None,
    which: str = "url",
    queue_name: str | None = None,
) -> tuple[str, Any, QueueSpec | None]:
    """The queue URL, an Sqs and the config's queue (None without a config file) for commands
    that may run with or without a config file."""
    from poller.sqs import Sqs, make_client

    config = optional_config(config_path, required=not queue_url or queue_name is not None)
    spec = configured_queue(config, queue_name, queue_url)
    url = queue_url or getattr(spec.queue, which)  # type: ignore[union-attr]  # a config was required
    endpoint = endpoint_url if endpoint_url is not None else (spec.queue.endpoint_url if spec else "")
    region = region or (spec.queue.region if spec else "")
    return url, Sqs(make_client(url, region, endpoint, read_timeout=30)), spec


def configured_queue(config: Config | None, name: str | None, url: str | None) -> QueueSpec | None:
    """The config's queue a command acts on: --queue NAME; else the queue whose url or dlq_url
    is the URL given; else the only one (with several, ConfigError listing them)."""
    if config is None:
        return None
    if name is None and url:
        for spec in config.queues:
            if url in (spec.queue.url, spec.queue.dlq_url):
                return spec
    return select_queue(config, name)


def make_encryptor(
    config_path: str | None,
    queue_url: str | None,
    keyring: str | None,
    kms_key_id: str | None,
    region: str | None,
) -> Any:
    from poller.config import CryptoConfig
    from poller.crypto.envelope import build_encryptor

    if keyring and kms_key_id:
        raise click.UsageError("give --keyring or --kms-key-id, not both")
    if keyring:
        return build_encryptor(CryptoConfig(enabled=True, provider="local", keyring_path=keyring))
    if kms_key_id:
        return build_encryptor(CryptoConfig(enabled=True, key_id=kms_key_id, region=region or ""))
    config = optional_config(config_path, required=not queue_url)
    if config is None or not config.crypto.enabled:
        raise ConfigError("--encrypt needs [crypto] enabled in the config, or --keyring/--kms-key-id")
    if config.crypto.provider == "kms" and not config.crypto.key_id:
        raise ConfigError("--encrypt with crypto.provider = 'kms' needs crypto.key_id")
    return build_encryptor(config.crypto)


def optional_config(config_path: str | None, required: bool) -> Config | None:
    path = resolve_path(config_path)
    if not required and not config_path and ENV_PATH not in os.environ and not os.path.exists(path):
        return None
    return load_config(config_path)
