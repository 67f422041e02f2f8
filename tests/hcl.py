"""Parsed HCL for the deployment tests: python-hcl2 keeps string quotes and adds bookkeeping
keys; `load_hcl` drops both."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def unquote(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            unquote(key): unquote(item)
            for key, item in value.items()
            if not (isinstance(key, str) and key.startswith("__"))
        }
    if isinstance(value, list):
        return [unquote(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_hcl(path: Path) -> dict:
    import hcl2

    with path.open() as handle:
        return unquote(hcl2.load(handle))
