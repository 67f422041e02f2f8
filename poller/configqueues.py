"""The several-queues form: [queues.NAME] tables, each with its [queues.NAME.handler] and
[queues.NAME.flow], and their environment overrides, built into `QueueSpec`s.

A queue table holds the [queue] keys plus priority, weight and max_concurrency; its handler and
flow tables hold the [handler] and [flow] keys. Every key is the one-queue form's declaration,
named by its place: `queues.orders.handler.batch_size`, `SQS_POLLER_QUEUES_ORDERS_HANDLER_BATCH_SIZE`.

The environment overrides keys of the queues the file defines; it never adds a queue (a queue
needs its URLs and handler together, and only the file's names make a variable's underscores
readable). A variable is matched against every key of those queues, NAME upper-cased and `-`
as `_`; one that could mean two keys (queues `a` and `a_handler`:
SQS_POLLER_QUEUES_A_HANDLER_BATCH_SIZE, a.handler.batch_size or a_handler.batch_size) is an
error naming both.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from poller.config import FlowConfig, HandlerConfig, QueueConfig, QueueSpec
from poller.configkeys import ENV_PREFIX, SCHEMA, Key, declared_keys, parse_env, section_values
from poller.errors import ConfigError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
QUEUES_ENV = f"{ENV_PREFIX}QUEUES_"
SUBTABLES = ("handler", "flow")  # a queue's own tables, each holding that section's keys
OWN = ""  # the queue table's own keys, in `Tables`

Tables = dict[str, dict[str, dict[str, Any]]]  # NAME -> {"" | "handler" | "flow": {key: value}}


def queue_table_keys(name: str) -> dict[str, dict[str, Key]]:
    """Every key of queue NAME's tables: {"": [queues.NAME]'s, "handler": ..., "flow": ...}."""
    at = f"queues.{name}"
    own = {k.name: dataclasses.replace(k, section=at) for k in SCHEMA["queue"].values()}
    own.update({k.name: k for k in declared_keys(at, QueueSpec)})
    keys = {OWN: own}
    for sub in SUBTABLES:
        keys[sub] = {k.name: dataclasses.replace(k, section=f"{at}.{sub}") for k in SCHEMA[sub].values()}
    return keys


def read_queue_tables(raw: Any, where: str) -> Tables:
    """The [queues] table, every name and key checked (values are checked when built)."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"[queues] in {where} must hold one [queues.NAME] table a queue")
    tables: Tables = {}
    for name, table in raw.items():
        if not NAME.match(name):
            raise ConfigError(
                f"[queues.{name}] in {where}: the queue name {name!r} is not allowed; a name is lower-case "
                "letters, digits, '_' and '-', starting with a letter or digit ([a-z0-9][a-z0-9_-]*)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"queues.{name} in {where} must be a table: [queues.{name}], one a queue")
        keys = queue_table_keys(name)
        parts: dict[str, dict[str, Any]] = {OWN: {}, **{sub: {} for sub in SUBTABLES}}
        for key, value in table.items():
            if key in SUBTABLES:
                if not isinstance(value, dict):
                    raise ConfigError(f"queues.{name}.{key} in {where} must be a table [queues.{name}.{key}]")
                for sub_key in value:
                    if sub_key not in keys[key]:
                        raise ConfigError(
                            f"unknown key queues.{name}.{key}.{sub_key} in {where}; allowed keys in "
                            f"[queues.{name}.{key}]: {', '.join(keys[key])}"
                        )
                parts[key] = dict(value)
            elif key in keys[OWN]:
                parts[OWN][key] = value
            else:
                allowed = ", ".join([*keys[OWN], *(f"[queues.{name}.{sub}]" for sub in SUBTABLES)])
                raise ConfigError(
                    f"unknown key queues.{name}.{key} in {where}; allowed in [queues.{name}]: {allowed}"
                )
        tables[name] = parts
    return tables


def apply_queue_env(tables: Tables, env: Mapping[str, str], where: str) -> None:
    """Set each SQS_POLLER_QUEUES_* variable's key in `tables` (the file's queues)."""
    if not env:
        return
    by_env: dict[str, list[tuple[str, str, Key]]] = {}
    for name in tables:
        for sub, keys in queue_table_keys(name).items():
            for key in keys.values():
                by_env.setdefault(key.env, []).append((name, sub, key))
    for var, text in env.items():
        found = by_env.get(var, [])
        if len(found) > 1:
            paths = " or ".join(key.path for _, _, key in found)
            raise ConfigError(f"{var} is ambiguous: it could set {paths}; rename one of those queues")
        if not found:
            names = ", ".join(tables) if tables else "none"
            raise ConfigError(
                f"unknown environment variable {var}: a queue's overrides are {QUEUES_ENV}<NAME>_<KEY>, "
                f"..._<NAME>_HANDLER_<KEY> and ..._<NAME>_FLOW_<KEY> (NAME upper-cased, '-' as '_') for a "
                f"queue the config file defines; the environment cannot add a queue. "
                f"[queues.NAME] tables in {where}: {names}"
            )
        name, sub, key = found[0]
        tables[name][sub][key.name] = parse_env(key, text)


def build_queue_specs(tables: Tables, where: str) -> tuple[QueueSpec, ...]:
    """One QueueSpec a table, in file order; every value checked against its declaration."""
    specs = []
    for name, parts in tables.items():
        keys = queue_table_keys(name)
        own = section_values(keys[OWN], parts[OWN], where)
        queue = QueueConfig(**{k: v for k, v in own.items() if k in SCHEMA["queue"]})
        share = {k: v for k, v in own.items() if k not in SCHEMA["queue"]}
        handler = HandlerConfig(**section_values(keys["handler"], parts["handler"], where))
        flow = FlowConfig(**section_values(keys["flow"], parts["flow"], where))
        specs.append(QueueSpec(name, queue, handler, flow, **share))
    return tuple(specs)
