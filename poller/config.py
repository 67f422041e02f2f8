"""One frozen, validated configuration: TOML file, then SQS_POLLER_<SECTION>_<KEY> overrides."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from poller.crypto.envelope import CryptoConfig
from poller.errors import ConfigError
from poller.pipeline.idempotency import IdempotencyConfig
from poller.pipeline.secrets import SecretsConfig

DEFAULT_PATH = "/etc/sqs-poller/poller.toml"
ENV_PATH = "SQS_POLLER_CONFIG"
ENV_PREFIX = "SQS_POLLER_"


@dataclass(frozen=True)
class QueueConfig:
    url: str
    dlq_url: str
    region: str = ""
    endpoint_url: str = ""
    wait_time_seconds: int = 20
    batch_size: int = 10
    visibility_timeout: int = 30
    max_receives: int = 5

    @property
    def is_fifo(self) -> bool:
        return self.url.endswith(".fifo")


@dataclass(frozen=True)
class RetryConfig:
    backoff_base: float = 2.0
    backoff_max: int = 900


@dataclass(frozen=True)
class WorkersConfig:
    processes: int = 2
    concurrency: int = 10
    shutdown_grace: int = 30


@dataclass(frozen=True)
class HandlerConfig:
    target: str
    timeout: int = 300
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9102"

    @property
    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True)
class LifecycleConfig:
    enabled: bool = False
    asg_name: str = ""
    hook_name: str = ""
    imds_url: str = "http://169.254.169.254"
    endpoint_url: str = ""
    poll_seconds: int = 5
    heartbeat_seconds: int = 60


@dataclass(frozen=True)
class Config:
    queue: QueueConfig
    handler: HandlerConfig
    retry: RetryConfig = RetryConfig()
    workers: WorkersConfig = WorkersConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    crypto: CryptoConfig = CryptoConfig()
    secrets: SecretsConfig = SecretsConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    source: str = ""


# --- the schema: one entry a key, in one place --------------------------------------------------


@dataclass(frozen=True)
class Key:
    kind: type
    default: Any = None
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None  # returns an error text, or None

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.low is not None:
            return f"{self.kind.__name__} within {self.low:g}..{self.high:g}"
        return {str: "a string", bool: "true or false", dict: "a table"}.get(self.kind, self.kind.__name__)


def _check_url(value: str) -> str | None:
    if value and not re.match(r"^https?://[^/\s]+/\S+$", value):
        return "must be a queue URL like https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
    return None


def _check_endpoint(value: str) -> str | None:
    if value and not re.match(r"^https?://[^/\s]+/?$", value):
        return "must be an endpoint URL like http://127.0.0.1:9324"
    return None


def _check_target(value: str) -> str | None:
    if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", value):
        return "must be 'package.module:callable'"
    return None


def _check_listen(value: str) -> str | None:
    if value and not re.match(r"^(\[[0-9a-fA-F:]+\]|[\w.-]*):\d{1,5}$", value):
        return "must be 'host:port' like 127.0.0.1:9102, or \"\" to disable"
    if value and not 0 < int(value.rpartition(":")[2]) < 65536:
        return "port must be within 1..65535"
    return None


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


SCHEMA: dict[str, dict[str, Key]] = {
    "queue": {
        "url": Key(str, required=True, check=_check_url),
        "dlq_url": Key(str, required=True, check=_check_url),
        "region": Key(str, ""),
        "endpoint_url": Key(str, "", check=_check_endpoint),
        "wait_time_seconds": Key(int, 20, low=0, high=20),
        "batch_size": Key(int, 10, low=1, high=10),
        "visibility_timeout": Key(int, 30, low=1, high=43200),
        "max_receives": Key(int, 5, low=1, high=1000),
    },
    "retry": {
        "backoff_base": Key(float, 2.0, low=0, high=43200),
        "backoff_max": Key(int, 900, low=0, high=43200),
    },
    "workers": {
        "processes": Key(int, None, low=1, high=256),
        "concurrency": Key(int, 10, low=1, high=1000),
        "shutdown_grace": Key(int, 30, low=0, high=3600),
    },
    "handler": {
        "target": Key(str, required=True, check=_check_target),
        "timeout": Key(int, 300, low=1, high=43200),
        "options": Key(dict, None),
    },
    "metrics": {"listen": Key(str, "127.0.0.1:9102", check=_check_listen)},
    "logging": {
        "level": Key(str, "info", choices=("debug", "info", "warning", "error")),
        "format": Key(str, "json", choices=("json", "console")),
    },
    "lifecycle": {
        "enabled": Key(bool, False),
        "asg_name": Key(str, ""),
        "hook_name": Key(str, ""),
        "imds_url": Key(str, "http://169.254.169.254", check=_check_endpoint),
        "endpoint_url": Key(str, "", check=_check_endpoint),
        "poll_seconds": Key(int, 5, low=1, high=300),
        "heartbeat_seconds": Key(int, 60, low=1, high=7200),
    },
}

SCHEMA["crypto"] = {
    "enabled": Key(bool, False),
    "provider": Key(str, "kms", choices=("kms", "local")),
    "key_id": Key(str, ""),
    "keyring_path": Key(str, ""),
    "region": Key(str, ""),
    "endpoint_url": Key(str, "", check=_check_endpoint),
    "require_encryption": Key(bool, False),
    "data_key_max_age": Key(float, 300.0, low=1, high=86400),
    "data_key_max_messages": Key(int, 1000, low=1, high=1_000_000),
}
SCHEMA["secrets"] = {
    "ssm_paths": Key(list, None),
    "secrets_manager": Key(dict, None),
    "ttl": Key(float, 300.0, low=0, high=86400),
    "region": Key(str, ""),
    "endpoint_url": Key(str, "", check=_check_endpoint),
}
SCHEMA["idempotency"] = {
    "enabled": Key(bool, False),
    "table": Key(str, ""),
    "key_field": Key(str, ""),
    "ttl_seconds": Key(int, 86400, low=60, high=31_536_000),
    "in_progress_timeout": Key(float, 0.0, low=0, high=43200),
    "region": Key(str, ""),
    "endpoint_url": Key(str, "", check=_check_endpoint),
}

SECTION_TYPES = {
    "crypto": CryptoConfig,
    "secrets": SecretsConfig,
    "idempotency": IdempotencyConfig,
    "queue": QueueConfig,
    "retry": RetryConfig,
    "workers": WorkersConfig,
    "handler": HandlerConfig,
    "metrics": MetricsConfig,
    "logging": LoggingConfig,
    "lifecycle": LifecycleConfig,
}


# --- loading ------------------------------------------------------------------------------------


def resolve_path(path: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return path or env.get(ENV_PATH) or DEFAULT_PATH


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, validate. Raises ConfigError naming the key."""
    env = os.environ if env is None else env
    path = resolve_path(path, env)
    raw: dict[str, Any] = {}
    explicit = path != DEFAULT_PATH or ENV_PATH in env
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        if explicit or not _has_env_overrides(env):
            raise ConfigError(
                f"config file not found: {path} (pass --config PATH or set {ENV_PATH})"
            ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    return build_config(raw, env, source=path)


def _has_env_overrides(env: Mapping[str, str]) -> bool:
    return any(k.startswith(ENV_PREFIX) and k != ENV_PATH for k in env)


def build_config(raw: Mapping[str, Any], env: Mapping[str, str], source: str = "") -> Config:
    sections: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if name not in SCHEMA:
            raise ConfigError(
                f"unknown section [{name}] in {source or 'config'}; allowed sections: {', '.join(SCHEMA)}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        for key in table:
            if key not in SCHEMA[name]:
                raise ConfigError(
                    f"unknown key {name}.{key} in {source or 'config'}; "
                    f"allowed keys in [{name}]: {', '.join(SCHEMA[name])}"
                )
        sections[name] = dict(table)
    _apply_env(sections, env)

    built = {}
    for name, keys in SCHEMA.items():
        table = sections.get(name, {})
        values = {}
        for key, spec in keys.items():
            where = f"{name}.{key}"
            if key in table:
                values[key] = _validate(where, table[key], spec)
            elif spec.required:
                raise ConfigError(
                    f"missing required key {where} (set it in [{name}] of "
                    f"{source or 'the config file'} or in {env_name(name, key)})"
                )
            elif spec.default is not None:
                values[key] = spec.default
        if name == "workers" and "processes" not in values:
            values["processes"] = _cpu_count()
        if name == "handler" and "options" in values:
            values["options"] = _freeze(values["options"])
        built[name] = SECTION_TYPES[name](**values)
    config = Config(**built, source=source)
    _cross_check(config)
    return config


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _apply_env(sections: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    known = {env_name(s, k): (s, k) for s, keys in SCHEMA.items() for k in keys}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PATH:
            continue
        if var not in known:
            raise ConfigError(
                f"unknown environment variable {var}; overrides are "
                f"{ENV_PREFIX}<SECTION>_<KEY>, e.g. {env_name('queue', 'url')}"
            )
        section, key = known[var]
        spec = SCHEMA[section][key]
        if spec.kind is dict:
            raise ConfigError(f"{var}: [{section}] {key} is a table and cannot be set from env")
        sections.setdefault(section, {})[key] = _parse_env(var, text, spec)


def _parse_env(var: str, text: str, spec: Key) -> Any:
    try:
        if spec.kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if spec.kind is int:
            return int(text)
        if spec.kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{var}={text!r} is not valid; allowed: {spec.allowed()}") from None
    return text


def _validate(where: str, value: Any, spec: Key) -> Any:
    ok_type = isinstance(value, spec.kind) and not (spec.kind in (int, float) and isinstance(value, bool))
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok_type = float(value), True
    if not ok_type:
        raise ConfigError(
            f"{where} = {value!r} has the wrong type ({type(value).__name__}); allowed: {spec.allowed()}"
        )
    if spec.low is not None and not spec.low <= value <= spec.high:
        raise ConfigError(f"{where} = {value!r} is out of range; allowed: {spec.allowed()}")
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{where} = {value!r} is not allowed; allowed: {spec.allowed()}")
    if spec.check and (problem := spec.check(value)):
        raise ConfigError(f"{where} = {value!r} is not valid: {problem}")
    return value


def _freeze(options: Mapping[str, Any]) -> Mapping[str, Any]:
    # A plain dict copy: handlers may read it freely; the Config itself stays frozen.
    return dict(options)


def _cross_check(config: Config) -> None:
    q = config.queue
    if q.url == q.dlq_url:
        raise ConfigError("queue.dlq_url must differ from queue.url")
    if q.is_fifo != q.dlq_url.endswith(".fifo"):
        raise ConfigError("queue.dlq_url must be a FIFO queue (.fifo) exactly when queue.url is one")
    if config.retry.backoff_max < config.retry.backoff_base:
        raise ConfigError(
            f"retry.backoff_max = {config.retry.backoff_max} is below "
            f"retry.backoff_base = {config.retry.backoff_base:g}; allowed: >= backoff_base"
        )
    lc = config.lifecycle
    if lc.enabled and not (lc.asg_name and lc.hook_name):
        raise ConfigError("lifecycle.enabled = true needs lifecycle.asg_name and lifecycle.hook_name")
