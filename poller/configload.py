"""Loading the configuration: a TOML file, then SQS_POLLER_<SECTION>_<KEY> overrides, each value
checked against its declaration in `poller.config`. Errors name the key and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from poller.config import SECTIONS, Config, Spec, cpu_count, cross_check
from poller.errors import ConfigError

DEFAULT_PATH = "/etc/sqs-poller/poller.toml"
ENV_PATH = "SQS_POLLER_CONFIG"
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
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _kind(annotation: Any) -> type:
    origin = typing.get_origin(annotation) or annotation
    if origin in (tuple, list):
        return tuple
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return dict
    return origin


def schema_keys() -> Iterator[Key]:
    """Every key of every section, in declaration order."""
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            yield Key(section, f.name, _kind(hints[f.name]), default, f.metadata["spec"])


SCHEMA: dict[str, dict[str, Key]] = {}
for _key in schema_keys():
    SCHEMA.setdefault(_key.section, {})[_key.name] = _key


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
    for name, table in raw.items():
        if name not in SCHEMA:
            raise ConfigError(f"unknown section [{name}] in {where}; allowed sections: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        for key in table:
            if key not in SCHEMA[name]:
                allowed = ", ".join(SCHEMA[name])
                raise ConfigError(f"unknown key {name}.{key} in {where}; allowed keys in [{name}]: {allowed}")
        sections[name] = dict(table)
    for var, text in env.items():
        if var.startswith(ENV_PREFIX) and var != ENV_PATH:
            spec = _env_key(var)
            sections.setdefault(spec.section, {})[spec.name] = parse_env(spec, text)

    built: dict[str, Any] = {}
    for name, keys in SCHEMA.items():
        table = sections.get(name, {})
        values = {}
        for key in keys.values():
            if key.name in table:
                values[key.name] = validate(key, table[key.name])
            elif key.spec.required:
                raise ConfigError(
                    f"missing required key {key.path} (set it in [{name}] of "
                    f"{source or 'the config file'} or in {key.env})"
                )
        built[name] = SECTIONS[name](**values)
    if built["workers"].processes == 0:
        built["workers"] = dataclasses.replace(built["workers"], processes=cpu_count())
    config = Config(**built, source=source)
    problem = cross_check(config)
    if problem:
        raise ConfigError(problem)
    return config


def _env_key(var: str) -> Key:
    for keys in SCHEMA.values():
        for key in keys.values():
            if key.env == var:
                return key
    raise ConfigError(
        f"unknown environment variable {var}; overrides are "
        f"{ENV_PREFIX}<SECTION>_<KEY>, e.g. {env_name('queue', 'url')}"
    )


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
