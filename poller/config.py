"""The configuration schema: every section and key, with its type, default, range and check,
declared once. The loader (`poller.configload`) reads TOML and SQS_POLLER_<SECTION>_<KEY>
overrides against these declarations; nothing else states a default or a range.

A key is a dataclass field whose metadata holds a `Spec`; its type comes from the annotation
(str, int, float, bool, tuple[str, ...] for a list, Mapping for a table).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any

from poller.errors import ConfigError

# --- key declarations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None
    doc: str = ""


def key(
    default: Any = MISSING,
    *,
    required: bool = False,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], str | None] | None = None,
    doc: str = "",
) -> Any:
    spec = Spec(required, low, high, choices, check, doc)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"spec": spec})
    if required:
        return field(default="", metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def _url(value: str) -> str | None:
    if value and not re.match(r"^https?://[^/\s]+/\S+$", value):
        return "must be a queue URL like https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
    return None


def _endpoint(value: str) -> str | None:
    if value and not re.match(r"^https?://[^/\s]+/?$", value):
        return "must be an endpoint URL like http://127.0.0.1:9324"
    return None


def _region(value: str) -> str | None:
    # botocore's own rule for a region name: a worker could not make its client with another
    if value and not re.match(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$", value):
        return "must be a region name like eu-west-1"
    return None


def _target(value: str) -> str | None:
    if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", value):
        return "must be 'package.module:callable'"
    return None


def _listen(value: str) -> str | None:
    if value and not re.match(r"^(\[[0-9a-fA-F:]+\]|[\w.-]*):\d{1,5}$", value):
        return "must be 'host:port' like 127.0.0.1:9102, or \"\" to disable"
    if value and not 0 < int(value.rpartition(":")[2]) < 65536:
        return "port must be within 1..65535"
    return None


def _ssm_paths(paths: tuple[str, ...]) -> str | None:
    bad = [p for p in paths if not isinstance(p, str) or not p.startswith("/")]
    return f"{bad[0]!r} must be a path starting with '/'" if bad else None


def _name_to_id(table: Mapping[str, Any]) -> str | None:
    if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in table.items()):
        return 'must be a table of name = "secret id or ARN"'
    return None


def _zero_or_at_least(minimum: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if value == 0 or value >= minimum else f"must be 0 or at least {minimum:g}"

    return check


def _dotted(value: str) -> str | None:
    if value and any(part == "" for part in value.split(".")):
        return "must be a dotted field name like request.id"
    return None


def _filters(patterns: tuple[str, ...]) -> str | None:
    from poller.pipeline.filters import compile_filters

    try:
        compile_filters(patterns)
    except ConfigError as exc:  # names the pattern and what is wrong with it
        return str(exc)
    return None


# --- the sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueConfig:
    url: str = key(required=True, check=_url)
    dlq_url: str = key(required=True, check=_url)
    region: str = key("", check=_region)
    endpoint_url: str = key("", check=_endpoint)
    wait_time_seconds: int = key(20, low=0, high=20)
    batch_size: int = key(10, low=1, high=10)
    visibility_timeout: int = key(30, low=1, high=43200)
    max_receives: int = key(5, low=1, high=1000)
    seconds_per_message: float = key(
        1.0,
        low=0.001,
        high=43200,
        doc="scaling: the seconds a message holds a slot, until this host has measured it",
    )

    @property
    def is_fifo(self) -> bool:
        return self.url.endswith(".fifo")


@dataclass(frozen=True)
class RetryConfig:
    backoff_base: float = key(2.0, low=0, high=43200)
    backoff_max: int = key(900, low=0, high=43200)


@dataclass(frozen=True)
class WorkersConfig:
    processes: int = key(0, low=0, high=256, doc="0 = the CPU count")
    concurrency: int = key(10, low=1, high=1000)
    shutdown_grace: int = key(30, low=0, high=3600)
    max_memory_mb: int = key(0, low=0, high=1_048_576)
    max_messages: int = key(0, low=0, high=1_000_000_000)
    stuck_margin: int = key(60, low=1, high=86400, doc="seconds past handler.timeout: then stuck")


@dataclass(frozen=True)
class HandlerConfig:
    target: str = key(required=True, check=_target)
    timeout: int = key(300, low=1, high=43200)
    options: Mapping[str, Any] = key({})
    style: str = key("message", choices=("message", "batch", "lambda"))
    batch_size: int = key(10, low=1, high=10000)
    batch_window: float = key(0.0, low=0, high=300)
    filters: tuple[str, ...] = key((), check=_filters, doc="Lambda filter patterns (JSON)")


def _at_most(chars: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return f"must be at most {chars} characters" if len(value) > chars else None

    return check


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = key("127.0.0.1:9102", check=_listen)
    emf_namespace: str = key("", check=_at_most(255), doc='CloudWatch EMF per-release figures; "" = off')
    deployment: str = key("", check=_at_most(1024), doc="EMF dimension Deployment")
    version: str = key("", check=_at_most(1024), doc="EMF dimension Version: the release")
    ready_window: int = key(
        60,
        low=1,
        high=3600,
        doc="seconds receives may fail before /readyz says 503 (permanent errors: at once)",
    )

    @property
    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = key("info", choices=("debug", "info", "warning", "error"))
    format: str = key("json", choices=("json", "console"))


@dataclass(frozen=True)
class LifecycleConfig:
    enabled: bool = key(False)
    spot: bool = key(False)
    asg_name: str = key("")
    hook_name: str = key("")
    imds_url: str = key("http://169.254.169.254", check=_endpoint)
    endpoint_url: str = key("", check=_endpoint)
    poll_seconds: int = key(5, low=1, high=300)
    heartbeat_seconds: int = key(60, low=1, high=7200)
    rebalance_drain_seconds: int = key(120, low=1, high=3600, doc="drain bound on a rebalance notice")


@dataclass(frozen=True)
class CryptoConfig:
    enabled: bool = key(False)
    provider: str = key("kms", choices=("kms", "local"))
    key_id: str = key("", doc="KMS key id/ARN/alias; local: overrides the keyring's primary")
    keyring_path: str = key("", doc="local provider only")
    region: str = key("", check=_region)
    endpoint_url: str = key("", check=_endpoint)
    require_encryption: bool = key(False)
    data_key_max_age: float = key(300.0, low=1, high=86400)
    data_key_max_messages: int = key(1000, low=1, high=1_000_000)


@dataclass(frozen=True)
class SecretsConfig:
    ssm_paths: tuple[str, ...] = key((), check=_ssm_paths)
    secrets_manager: Mapping[str, str] = key({}, check=_name_to_id)
    ttl: float = key(300.0, low=0, high=86400, check=_zero_or_at_least(10), doc="0 = only on SIGHUP")
    region: str = key("", check=_region)
    endpoint_url: str = key("", check=_endpoint)

    @property
    def enabled(self) -> bool:
        return bool(self.ssm_paths or self.secrets_manager)


@dataclass(frozen=True)
class IdempotencyConfig:
    enabled: bool = key(False)
    table: str = key("")
    key_field: str = key("", check=_dotted, doc='"" = the SQS message id')
    ttl_seconds: int = key(86400, low=60, high=31_536_000)
    in_progress_timeout: float = key(0.0, low=0, high=43200, check=_zero_or_at_least(1))
    region: str = key("", check=_region)
    endpoint_url: str = key("", check=_endpoint)


@dataclass(frozen=True)
class FlowConfig:
    max_per_second: float = key(0.0, low=0, high=100_000, doc="0 = no limit")
    breaker_failure_ratio: float = key(0.5, low=0.01, high=1.0)
    breaker_min_messages: int = key(20, low=1, high=100_000)
    breaker_cooldown: float = key(30.0, low=1, high=3600)


@dataclass(frozen=True)
class PayloadConfig:
    s3_bucket: str = key("")
    offload_above: int = key(262144, low=1, high=1048576)
    delete_after_success: bool = key(True)
    region: str = key("", check=_region, doc='"" = the queue\'s region')
    endpoint_url: str = key("", check=_endpoint, doc='"" = AWS; a local S3-compatible endpoint')


@dataclass(frozen=True)
class TracingConfig:
    enabled: bool = key(False)


@dataclass(frozen=True)
class ControlConfig:  # operator control: pause, resume, quiet, status (docs/operations.md)
    socket: str = key("", check=lambda v: "must be an absolute path" if v and v[0] != "/" else None)
    ssm_parameter: str = key("", doc='SSM parameter the --fleet commands write; "" = none')
    poll_seconds: int = key(10, low=1, high=3600, doc="how often the fleet's parameter is read")
    region: str = key("", check=_region)
    endpoint_url: str = key("", check=_endpoint)


SECTIONS: dict[str, type] = {
    "queue": QueueConfig,
    "retry": RetryConfig,
    "workers": WorkersConfig,
    "handler": HandlerConfig,
    "metrics": MetricsConfig,
    "logging": LoggingConfig,
    "lifecycle": LifecycleConfig,
    "crypto": CryptoConfig,
    "secrets": SecretsConfig,
    "idempotency": IdempotencyConfig,
    "flow": FlowConfig,
    "payload": PayloadConfig,
    "tracing": TracingConfig,
    "control": ControlConfig,
}


@dataclass(frozen=True)
class QueueSpec:
    """One queue the daemon serves: a [queues.NAME] table, or the one-queue form's [queue],
    [handler] and [flow]. Worker processes and their slots are shared by every queue."""

    name: str  # the table's NAME; one-queue form: the URL's last path segment
    queue: QueueConfig
    handler: HandlerConfig
    flow: FlowConfig
    priority: int = key(0, low=-1000, high=1000, doc="larger first: strict between priorities")
    weight: int = key(1, low=1, high=1000, doc="share of free slots among busy queues of one priority")
    max_concurrency: int = key(
        0, low=0, high=1000, doc="messages in flight per process; 0 = workers.concurrency"
    )


def queue_name(url: str) -> str:
    """The one-queue form's name for its queue: the URL's last path segment."""
    return url.rstrip("/").rpartition("/")[2]


@dataclass(frozen=True)
class Config:
    """The whole configuration. `queues` holds every queue, in file order (never empty);
    `queue`, `handler` and `flow` are the first one's settings, for code that serves one queue.
    Code that serves every queue iterates `queues`."""

    queue: QueueConfig
    handler: HandlerConfig
    retry: RetryConfig = field(default_factory=RetryConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    crypto: CryptoConfig = field(default_factory=CryptoConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    idempotency: IdempotencyConfig = field(default_factory=IdempotencyConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    payload: PayloadConfig = field(default_factory=PayloadConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    source: str = ""
    queues: tuple[QueueSpec, ...] = ()

    def __post_init__(self) -> None:
        if not self.queues:  # the one-queue form
            one = QueueSpec(queue_name(self.queue.url), self.queue, self.handler, self.flow)
            object.__setattr__(self, "queues", (one,))


def select_queue(config: Config, name: str | None) -> QueueSpec:
    """The queue a command acts on (`--queue NAME`): with one queue, `name` may be None."""
    if name is None and len(config.queues) == 1:
        return config.queues[0]
    for spec in config.queues:
        if spec.name == name:
            return spec
    names = ", ".join(spec.name for spec in config.queues)
    if name is None:
        raise ConfigError(f"the config has {len(config.queues)} queues: give --queue NAME, one of: {names}")
    raise ConfigError(f"no queue named {name!r} in the config; its queues: {names}")
