"""AWS clients, made the same way everywhere: a new session per process, bounded timeouts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from poller.errors import ConfigError

T = TypeVar("T")


def aws_client(
    service: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = 5,
    read_timeout: float = 10,
    attempts: int = 3,
    pool_size: int = 10,
) -> Any:
    """A client on a new boto3 session: create it in the process that uses it."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service,
        region_name=region or None,
        endpoint_url=endpoint_url or None,
        config=Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": attempts},
            max_pool_connections=max(pool_size, 10),
            tcp_keepalive=True,
        ),
    )


def section_from_mapping(cls: type[T], name: str, section: Mapping[str, Any]) -> T:
    """Build a config section dataclass from a TOML table; an unknown key is named."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key")
    return cls(**section)
