"""Loading the configuration: a TOML file, then SQS_POLLER_<SECTION>_<KEY> overrides, each value
checked against its declaration in `poller.config`. Errors name the key and what is allowed.

Queues come in one of two forms, never both: [queue] + [handler] + [flow] for one queue, or a
[queues.NAME] table a queue (`poller.configqueues`)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from poller.config import SECTIONS, Config
from poller.configcheck import cross_check
from poller.configkeys import ENV_PREFIX, SCHEMA, Key, env_name, parse_env, schema_keys, section_values
from poller.configqueues import QUEUES_ENV, apply_queue_env, build_queue_specs, read_queue_tables
from poller.errors import ConfigError

__all__ = ["DEFAULT_PATH", "ENV_PATH", "build_config", "load_config", "resolve_path", "schema_keys"]

DEFAULT_PATH = "/etc/sqs-poller/poller.toml"
ENV_PATH = "SQS_POLLER_CONFIG"
ONE_QUEUE = ("queue", "handler", "flow")  # the one-queue form's sections


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- loading ----------------------------------------------------------------------------------------


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
        if explicit or not any(k.startswith(ENV_PREFIX) and k != ENV_PATH for k in env):
            raise ConfigError(
                f"config file not found: {path} (pass --config PATH or set {ENV_PATH})"
            ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    return build_config(raw, env, source=path)


def build_config(raw: Mapping[str, Any], env: Mapping[str, str], source: str = "") -> Config:
    where = source or "config"
    sections: dict[str, dict[str, Any]] = {}
    tables = None
    for name, table in raw.items():
        if name == "queues":
            tables = read_queue_tables(table, where)
            continue
        if name not in SCHEMA:
            allowed = ", ".join([*SCHEMA, "queues"])
            raise ConfigError(f"unknown section [{name}] in {where}; allowed sections: {allowed}")
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        for key in table:
            if key not in SCHEMA[name]:
                allowed = ", ".join(SCHEMA[name])
                raise ConfigError(f"unknown key {name}.{key} in {where}; allowed keys in [{name}]: {allowed}")
        sections[name] = dict(table)
    if tables is not None and (mixed := [f"[{n}]" for n in ONE_QUEUE if n in sections]):
        raise ConfigError(
            f"{where} has both forms of queue config: [queues.NAME] tables and {', '.join(mixed)}; use "
            "one: [queue] + [handler] + [flow] for one queue, or a [queues.NAME] table a queue "
            "(with its [queues.NAME.handler] and [queues.NAME.flow])"
        )
    queue_env = {}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PATH:
            continue
        key = _env_key(var)
        if key is None:
            queue_env[var] = text
            continue
        if tables is not None and key.section in ONE_QUEUE:
            raise ConfigError(
                f"{var} sets {key.path} of the one-queue form, but {where} has [queues.NAME] tables "
                f"(a config has one form); set {QUEUES_ENV}<NAME>_... instead"
            )
        sections.setdefault(key.section, {})[key.name] = parse_env(key, text)
    apply_queue_env(tables or {}, queue_env, where)

    built: dict[str, Any] = {}
    for name, keys in SCHEMA.items():
        if tables is None or name not in ONE_QUEUE:
            built[name] = SECTIONS[name](
                **section_values(keys, sections.get(name, {}), source or "the config file")
            )
    if built["workers"].processes == 0:
        built["workers"] = dataclasses.replace(built["workers"], processes=cpu_count())
    if tables is None:
        config = Config(**built, source=source)
    else:
        specs = build_queue_specs(tables, source or "the config file")
        one = specs[0]
        config = Config(
            queue=one.queue, handler=one.handler, flow=one.flow, queues=specs, **built, source=source
        )
    problem = cross_check(config, tables=tables is not None)
    if problem:
        raise ConfigError(problem)
    return config


def _env_key(var: str) -> Key | None:
    """The section key `var` overrides; None for a queue table's (SQS_POLLER_QUEUES_...)."""
    for keys in SCHEMA.values():
        for key in keys.values():
            if key.env == var:
                return key
    if var.startswith(QUEUES_ENV):
        return None
    raise ConfigError(
        f"unknown environment variable {var}; overrides are {ENV_PREFIX}<SECTION>_<KEY>, e.g. "
        f"{env_name('queue', 'url')}, and {QUEUES_ENV}<NAME>_<KEY> for a [queues.NAME] table"
    )
