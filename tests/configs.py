"""Building config sections the way the daemon does: through the one schema and its loader."""

from __future__ import annotations

from typing import Any

from poller.configload import build_config

BASE = {
    "queue": {
        "url": "https://sqs.eu-west-1.amazonaws.com/1/jobs",
        "dlq_url": "https://sqs.eu-west-1.amazonaws.com/1/dlq",
    },
    "handler": {"target": "pkg.mod:handle"},
}


def section(name: str, values: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Any:
    """The [name] section built from `values` (and environment overrides), or ConfigError."""
    raw = {**BASE, name: {**BASE.get(name, {}), **(values or {})}}
    return getattr(build_config(raw, env or {}), name)
