"""AWS clients, made the same way everywhere: one botocore session per process, bounded
timeouts, one request per attempt counted as such."""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()  # botocore sessions are not thread-safe: clients are made one at a time
_session: tuple[int, Any] | None = None  # (pid, session): a child process makes its own


def session() -> Any:
    """This process's botocore session (made here: never inherited from another process). Its
    loader caches the endpoint and partition data every client needs: loaded once, not per client."""
    global _session
    import botocore.session

    if _session is None or _session[0] != os.getpid():
        _session = (os.getpid(), botocore.session.get_session())
    return _session[1]


def aws_client(
    service: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = 5,
    read_timeout: float = 10,
    attempts: int = 3,
    pool_size: int = 10,
    validate: bool = True,
) -> Any:
    """A client on this process's botocore session: create it in the process that uses it.
    (botocore directly: boto3 adds nothing to a low-level client but s3transfer's imports.)"""
    from botocore.config import Config

    with _lock:
        return session().create_client(
            service,
            region_name=region or None,
            endpoint_url=endpoint_url or None,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # total_max_attempts counts the first try: attempts=1 is one request, no retry
                retries={"mode": "standard", "total_max_attempts": attempts},
                parameter_validation=validate,
                max_pool_connections=max(pool_size, 10),
                tcp_keepalive=True,
            ),
        )


def default_region() -> str | None:
    """The region the AWS SDK resolves (AWS_REGION, AWS_DEFAULT_REGION, the config file)."""
    with _lock:
        return session().get_config_variable("region")
