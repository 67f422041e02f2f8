"""The schema's keys as the loader sees them: each key's path, type, default, declaration and
environment variable, and the two conversions every value goes through (`parse_env` for an
environment variable's text, `validate` for any value). Errors name the key and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from poller.config import SECTIONS, Spec
from poller.errors import ConfigError

ENV_PREFIX = "SQS_POLLER_"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Key:
    """One key of the schema, as the loader sees it."""

    section: str
    name: str
    kind: type  # str, int, float, bool, tuple (a list of strings), dict (a table)
    default: Any
    spec: Spec

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return env_name(self.section, self.name)

    def allowed(self) -> str:
        if self.spec.choices:
            return "one of " + ", ".join(repr(c) for c in self.spec.choices)
        if self.spec.low is not None:
            return f"{self.kind.__name__} within {self.spec.low:g}..{self.spec.high:g}"
        return {
            str: "a string",
            bool: "true or false",
            dict: "a table",
            tuple: "a list of strings",
        }.get(self.kind, self.kind.__name__)


def env_name(section: str, key: str) -> str:
    """SQS_POLLER_<SECTION>_<KEY>; a queue table's section `queues.my-jobs.handler` is
    QUEUES_MY_JOBS_HANDLER (upper case, `.` and `-` as `_`)."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}".replace(".", "_").replace("-", "_")


def _kind(annotation: Any) -> type:
    origin = typing.get_origin(annotation) or annotation
    if origin in (tuple, list):
        return tuple
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return dict
    return origin


def declared_keys(section: str, cls: type) -> Iterator[Key]:
    """The keys `cls` declares (its fields with a Spec), named as in `section`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "spec" not in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield Key(section, f.name, _kind(hints[f.name]), default, f.metadata["spec"])


def schema_keys() -> Iterator[Key]:
    """Every key of every section, in declaration order (a queue table's: `queue_table_keys`)."""
    for section, cls in SECTIONS.items():
        yield from declared_keys(section, cls)


SCHEMA: dict[str, dict[str, Key]] = {}
for _key in schema_keys():
    SCHEMA.setdefault(_key.section, {})[_key.name] = _key


def parse_env(key: Key, text: str) -> Any:
    """An environment variable's text as the key's type: lists comma-separated or JSON,
    tables as JSON objects."""
    try:
        if key.kind is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(text)
        if key.kind is int:
            return int(text)
        if key.kind is float:
            return float(text)
        if key.kind is tuple:
            if text.strip().startswith("["):
                value = json.loads(text)
                if not isinstance(value, list):
                    raise ValueError(text)
                return value
            return [part.strip() for part in text.split(",") if part.strip()]
        if key.kind is dict:
            value = json.loads(text or "{}")
            if not isinstance(value, dict):
                raise ValueError(text)
            return value
    except ValueError:
        hint = " (comma-separated, or a JSON array)" if key.kind is tuple else ""
        hint = " (a JSON object)" if key.kind is dict else hint
        raise ConfigError(f"{key.env}={text!r} is not valid; allowed: {key.allowed()}{hint}") from None
    return text


def validate(key: Key, value: Any) -> Any:
    """The value, converted to the key's type, or ConfigError naming the key and what is allowed."""
    kind = key.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif kind is tuple and isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key.path} = {value!r} has the wrong type; allowed: {key.allowed()}")
        value = tuple(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise ConfigError(
            f"{key.path} = {value!r} has the wrong type ({type(value).__name__}); allowed: {key.allowed()}"
        )
    spec = key.spec
    if spec.low is not None and not spec.low <= value <= spec.high:  # type: ignore[operator]
        raise ConfigError(f"{key.path} = {value!r} is out of range; allowed: {key.allowed()}")
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{key.path} = {value!r} is not allowed; allowed: {key.allowed()}")
    if spec.check and (problem := spec.check(value)):
        raise ConfigError(f"{key.path} = {value!r} is not valid: {problem}")
    return dict(value) if kind is dict else value


def section_values(keys: Mapping[str, Key], table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A section's values from `table`, each validated; a required key missing is an error."""
    values = {}
    for key in keys.values():
        if key.name in table:
            values[key.name] = validate(key, table[key.name])
        elif key.spec.required:
            raise ConfigError(
                f"missing required key {key.path} (set it in [{key.section}] of {where} or in {key.env})"
            )
    return values
